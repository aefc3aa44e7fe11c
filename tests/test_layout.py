"""Tests mirror the code file by file: picaco/<pkg>/<mod>.py is tested in tests/<pkg>/test_<mod>.py, and
flows/<mod>.py, tasks/<mod>.py in tests/flows/test_<mod>.py, tests/tasks/test_<mod>.py. A module without its
mirrored test file is listed in EXEMPT (the one table of exceptions) with the reason; a module that is tested
elsewhere names that test file, which must exist.

And the imports of picaco/, flows/, tasks/: no import cycle between modules (imports at module level, not under
TYPE_CHECKING), and a first-party import inside a function (a heavy optional dependency loaded lazily on
purpose, or a way around an error at import) says why in a comment on its line or the line above."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("picaco", "flows", "tasks")
FIRST_PARTY = PACKAGES + ("datasets_prep",)

_REEXPORTS = "package marker: docstring and re-exports only; what it exports is tested with its module"

# module path -> why it has no tests/.../test_<mod>.py ("tested by tests/<file>.py: ..." when tested elsewhere)
EXEMPT: dict[str, str] = {
    # package markers
    "picaco/__init__.py": "tested by tests/test_cli.py: the lazy public names are used by every CLI command",
    "picaco/base/__init__.py": _REEXPORTS,
    "picaco/deploy/__init__.py": _REEXPORTS,
    "picaco/eval/__init__.py": _REEXPORTS,
    "picaco/eval/methods/__init__.py": "tested by tests/eval/test_eval_baseline_prompts.py: METHODS is the "
                                       "registry every method's prompts are checked through",
    "picaco/llm/__init__.py": _REEXPORTS,
    "picaco/llm/providers/__init__.py": "tested by tests/llm/test_secrets.py: the provider registry, make_provider "
                                        "and endpoint_for (also tests/llm/test_client.py)",
    "picaco/method/__init__.py": _REEXPORTS,
    "picaco/sim/__init__.py": _REEXPORTS,
    "picaco/templates/__init__.py": _REEXPORTS,
    "picaco/values/__init__.py": _REEXPORTS,
    "flows/__init__.py": _REEXPORTS,
    "tasks/__init__.py": _REEXPORTS,
    # flows whose test needs the fixtures of another test folder
    "flows/collect.py": "tested by tests/datasets_prep/test_dsprep_flow.py: needs the dataset fixtures of "
                        "tests/datasets_prep/conftest.py",
    "flows/evaluate.py": "tested by tests/eval/test_eval_flow.py: needs the recording provider of "
                         "tests/eval/conftest.py",
    "flows/pipeline.py": "tested by tests/ops/test_ops_config.py: the derived configs; the Dask run in "
                         "tests/ops/test_ops_dask.py, the deployed pipeline in tests/ops/test_ops_deployment.py",
    # records and thin front ends, tested through what uses them
    "picaco/base/errors.py": "exception classes only; raised and matched in most tests (e.g. tests/base/test_config.py)",
    "picaco/config.py": "tested by tests/method/test_run.py: load/parse_run_config, two calls into picaco.io",
    "picaco/demo.py": "tested by tests/test_cli.py: `picaco demo` end to end on the simulator",
    "picaco/estimate.py": "tested by tests/datasets_prep/test_shipped_configs.py: every shipped run config "
                          "quick-estimated (also `picaco estimate` in tests/test_cli.py)",
    "picaco/deploy/cli.py": "tested by tests/deploy/test_serve.py: `picaco serve` and `picaco export` commands",
    "picaco/deploy/proxy.py": "tested by tests/deploy/test_serve.py: the proxy app against recording upstreams",
    "picaco/deploy/run_record.py": "tested by tests/deploy/test_export.py: finished and unusable runs",
    "picaco/deploy/serving.py": "tested by tests/deploy/test_serve.py",
    "picaco/deploy/target.py": "tested by tests/deploy/test_serve.py: where serve forwards, and its errors",
    "picaco/eval/inputs.py": "tested by tests/eval/test_eval_picaco_run.py: the test prompts held out from X",
    "picaco/eval/judging.py": "tested by tests/method/test_judge_schema_requests.py and tests/eval/test_eval_missing.py",
    "picaco/eval/plots.py": "tested by tests/eval/test_report.py: every figure written as a PNG",
    "picaco/eval/protocol.py": "tested by tests/eval/test_eval_baseline_prompts.py: the demonstrations and "
                               "samples each method gets",
    "picaco/eval/rows.py": "tested by tests/eval/test_report.py: the tables' rows",
    "picaco/eval/runner.py": "tested by tests/eval/test_report.py: the whole comparison (also "
                             "tests/eval/test_config.py, tests/eval/test_eval_missing.py, tests/tasks/test_evaluate.py)",
    "picaco/eval/store.py": "tested by tests/eval/test_eval_picaco_run.py and tests/tasks/test_evaluate.py",
    "picaco/eval/methods/base.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/cicl.py": "tested by tests/eval/test_eval_baseline_prompts.py: each method's prompts "
                                   "against the paper (App. C.3)",
    "picaco/eval/methods/modular.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/mp_system.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/opro.py": "tested by tests/eval/test_eval_baseline_prompts.py: OPRO's meta-prompt and score",
    "picaco/eval/methods/picaco.py": "tested by tests/eval/test_eval_picaco_run.py",
    "picaco/eval/methods/q.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/q_if.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/q_if_cot.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/urial.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/eval/methods/urial_sum.py": "tested by tests/eval/test_eval_baseline_prompts.py",
    "picaco/llm/cache_base.py": "tested by tests/llm/test_cache.py and tests/llm/test_cache_pg.py: the shared "
                                "base of both cache backends",
    "picaco/llm/calllog.py": "tested by tests/llm/test_client.py: the call log a client writes (also "
                             "tests/ops/test_ops_calllog.py)",
    "picaco/llm/engine_check.py": "tested by tests/llm/test_logprobs.py: picaco's scores against the engine's own",
    "picaco/method/incremental.py": "tested by tests/method/test_pareto_and_from_run.py: --from-run runs",
    "picaco/pareto.py": "tested by tests/method/test_pareto_and_from_run.py: picaco pareto on a finished run",
    "picaco/llm/engine_child.py": "tested by tests/llm/test_local_engine.py: the engine process the client starts",
    "picaco/llm/errors.py": "tested by tests/llm/test_secrets.py: errors one line, credentials masked (also "
                            "tests/llm/providers/test_openai.py, test_gemini.py)",
    "picaco/llm/pg_local.py": "tested by tests/llm/test_cache_pg.py: the session's real Postgres (tests/conftest.py)",
    "picaco/llm/providers/base.py": "tested by tests/llm/test_client.py: the Provider contract every fake implements",
    "picaco/llm/providers/llamacpp.py": "tested by tests/llm/test_local_engine.py",
    "picaco/llm/providers/sim.py": "tested by tests/method/test_run.py: every simulated run goes through it",
    "picaco/llm/request.py": "tested by tests/llm/test_client.py: request keys (also tests/llm/test_judge_schema.py)",
    "picaco/method/context.py": "tested by tests/method/test_run.py",
    "picaco/method/estimators.py": "tested by tests/method/test_objective.py: p_e and q_phi against hand-computed values",
    "picaco/method/inputs.py": "tested by tests/reliability/test_run_store.py: a changed input is named on resume",
    "picaco/method/picaco.py": "tested by tests/method/test_objective.py and tests/method/test_run.py",
    "picaco/method/pools.py": "tested by tests/method/test_objective.py: the pool updates",
    "picaco/method/state.py": "tested by tests/method/test_objective.py: the ranking of candidates",
    "picaco/method/store.py": "tested by tests/reliability/test_run_store.py",
    "picaco/sim/engine.py": "tested by tests/sim/test_world.py",
    "picaco/sim/lexicon_file.py": "tested by tests/sim/test_world_lexicon.py: every fault in the lexicon file",
    "picaco/sim/server_app.py": "tested by tests/sim/test_server.py",
    "picaco/sim/server_cli.py": "tested by tests/sim/test_server_limits.py: flags and the port in use",
    "picaco/sim/server_config.py": "tested by tests/sim/test_server.py",
    "picaco/sim/server_flags.py": "tested by tests/sim/test_server.py",
    "picaco/sim/serving.py": "tested by tests/sim/test_server.py (also tests/deploy/test_serve.py)",
    "picaco/sim/wire.py": "tested by tests/sim/test_server.py: both wire formats over HTTP",
    "picaco/sim/wire_gemini.py": "tested by tests/sim/test_server.py and tests/llm/providers/test_gemini.py",
    "picaco/sim/wire_openai.py": "tested by tests/sim/test_server.py and tests/llm/providers/test_openai.py",
    "picaco/sim/world_config.py": "tested by tests/sim/test_worlds.py",
    "picaco/sim/world_model.py": "tested by tests/sim/test_world.py",
    "picaco/sim/world_optimizer.py": "tested by tests/sim/test_world.py: the simulated optimizer",
    "picaco/sim/world_optimum.py": "tested by tests/sim/test_world.py: the world's optimum",
    "picaco/sim/world_prompts.py": "tested by tests/sim/test_world.py",
}


def modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def mirrored(module: str) -> str:
    """picaco/eval/methods/opro.py -> tests/eval/methods/test_opro.py; tasks/data.py -> tests/tasks/test_data.py"""
    parts = Path(module).parts
    if parts[0] == "picaco":
        parts = parts[1:]
    return str(Path("tests", *parts[:-1], "test_" + parts[-1]))


def test_mirrored_name():
    assert mirrored("picaco/eval/methods/opro.py") == "tests/eval/methods/test_opro.py"
    assert mirrored("picaco/io.py") == "tests/test_io.py"
    assert mirrored("flows/optimize.py") == "tests/flows/test_optimize.py"


def test_every_module_has_its_mirrored_test_file_or_an_exemption():
    missing = [f"{m} (expected {mirrored(m)})" for m in modules()
               if not (ROOT / mirrored(m)).is_file() and m not in EXEMPT]
    assert not missing, ("modules with neither a mirrored test file nor an entry in tests/test_layout.py EXEMPT:\n  "
                         + "\n  ".join(missing))


def test_the_exemption_table_is_current():
    known = set(modules())
    gone = [m for m in EXEMPT if m not in known]
    assert not gone, f"EXEMPT lists modules that no longer exist: {gone}"
    mirrored_now = [m for m in EXEMPT if (ROOT / mirrored(m)).is_file()]
    assert not mirrored_now, f"these modules have their mirrored test file now; remove them from EXEMPT: {mirrored_now}"
    for module, reason in EXEMPT.items():
        assert reason.strip(), f"{module}: an exemption needs a reason"
        for named in re.findall(r"tests/[\w/]+\.py", reason):
            assert (ROOT / named).is_file(), f"{module}: its exemption names {named}, which does not exist"


# -- imports ----------------------------------------------------------------------------------------------------
def module_name(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The dotted names an import statement may load: a module, or a name inside one (both tried)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        up = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(up + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def imports_of(path: str) -> tuple[set[str], list[tuple[int, bool]]]:
    """(first-party names imported at module level, [(line, says why) of each first-party import in a function])."""
    source = (ROOT / path).read_text(encoding="utf-8")
    lines = source.splitlines()
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    top: set[str] = set()
    inner: list[tuple[int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [n for n in imported(child, package) if n.split(".")[0] in FIRST_PARTY]
                if names and in_function:
                    said = "#" in lines[child.lineno - 1] or lines[child.lineno - 2].strip().startswith("#")
                    inner.append((child.lineno, said))
                elif names:
                    top.update(names)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for the type checker only: never imported at run time
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    visit(ast.parse(source), False)
    return top, inner


def import_graph() -> dict[str, set[str]]:
    known = {module_name(m): m for m in modules()}

    def owner(dotted: str) -> str | None:  # the module a dotted name lives in
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph = {}
    for name, path in known.items():
        owners = {owner(n) for n in imports_of(path)[0]}
        graph[name] = {o for o in owners if o is not None and o != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_finds_a_cycle_and_nothing_else():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles (module-level imports): {found}"


def test_first_party_imports_inside_functions_say_why():
    silent = [f"{m}:{line}" for m in modules() for line, said in imports_of(m)[1] if not said]
    assert not silent, ("first-party imports inside a function without a comment saying why (move them to the "
                        "top of the module, or say why they wait):\n  " + "\n  ".join(silent))

