"""Values, value compositions and demonstrations of the PICACO paper, as data.

    from picaco.values import load_composition
    comp = load_composition("hh_balance")        # or a path to a user YAML file

Bundled data: values_hh.yaml, values_schwartz.yaml (App. A.1, Tables 2 and 4) and compositions/*.yaml
(Sec. 4.1, App. A, Table 3, App. C.1). See docs/values_and_templates.md.
"""

from picaco.values.model import (
    DEFAULT_BETA,
    FAMILIES,
    KINDS,
    MAX_VALUES,
    Composition,
    CompositionError,
    Demonstration,
    Value,
    default_judge_variant,
    derive_seed_instruction,
    get_value,
    list_compositions,
    load_composition,
    load_demo_prompts,
    load_value_library,
)

__all__ = [
    "DEFAULT_BETA",
    "FAMILIES",
    "KINDS",
    "MAX_VALUES",
    "Composition",
    "CompositionError",
    "Demonstration",
    "Value",
    "default_judge_variant",
    "derive_seed_instruction",
    "get_value",
    "list_compositions",
    "load_composition",
    "load_demo_prompts",
    "load_value_library",
]
