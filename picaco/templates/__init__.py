"""Prompt templates of the PICACO paper (Figs. 7-10, App. C.3) and parsers for the replies.

Template text lives in `picaco/templates/*.txt`; see docs/values_and_templates.md. Put
`TEMPLATE_VERSION` into the cache key of every call whose prompt is rendered here.
"""

from picaco.templates.parse import (
    INSTRUCTION_LENGTH_FACTOR,
    ReplyParseError,
    normalize_key,
    parse_instruction,
    parse_proposal,
    parse_relevance,
    parse_value_scores,
)
from picaco.templates.render import (
    DEFAULT_INSTRUCTION_WORDS,
    JUDGE_VARIANTS,
    TECHNIQUES,
    TEMPLATE_DIGEST,
    TEMPLATE_VERSION,
    TEMPLATES,
    Template,
    TemplateError,
    join_names,
    render_cot_turns,
    render_e_step,
    render_m_step,
    render_query,
    render_relevance_judge,
    render_value_elaboration,
    render_value_judge,
    schwartz_seed_instruction,
    urial_schwartz_instruction,
)

__all__ = [
    "DEFAULT_INSTRUCTION_WORDS",
    "INSTRUCTION_LENGTH_FACTOR",
    "JUDGE_VARIANTS",
    "TECHNIQUES",
    "TEMPLATES",
    "TEMPLATE_DIGEST",
    "TEMPLATE_VERSION",
    "ReplyParseError",
    "Template",
    "TemplateError",
    "join_names",
    "normalize_key",
    "parse_instruction",
    "parse_proposal",
    "parse_relevance",
    "parse_value_scores",
    "render_cot_turns",
    "render_e_step",
    "render_m_step",
    "render_query",
    "render_relevance_judge",
    "render_value_elaboration",
    "render_value_judge",
    "schwartz_seed_instruction",
    "urial_schwartz_instruction",
]
