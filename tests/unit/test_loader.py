"""Scenario validation: every problem reported with its field path and the line that holds it.

Bad scenarios are made by mutating a copy of the shipped ``mm1.toml`` in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from darkfab.scenarios import shipped_scenarios
from darkfab.scenarios.loader import Problem, ScenarioError, load_scenario

MM1 = Path(__file__).resolve().parents[2] / "scenarios" / "files" / "mm1.toml"


@pytest.fixture
def mm1_text() -> str:
    return MM1.read_text(encoding="utf-8")


def mutate(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"mutation anchor {old!r} must occur exactly once"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the single line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} found on lines {hits}"
    return hits[0]


def problems_of(tmp_path: Path, text: str, overrides: list[str] | None = None,
                name: str = "bad.toml") -> tuple[Path, ScenarioError]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides or [])
    err = info.value
    assert err.problems, "a ScenarioError must carry at least one problem"
    assert all(isinstance(p, Problem) for p in err.problems)
    return path, err


def by_path(err: ScenarioError, path: str) -> Problem:
    hits = [p for p in err.problems if p.path == path]
    assert hits, f"no problem at {path!r}; got {[(p.path, p.message) for p in err.problems]}"
    return hits[0]


# --- the unmodified file and the problem format ------------------------------------------
def test_mm1_copy_is_valid(tmp_path, mm1_text):
    p = tmp_path / "ok.toml"
    p.write_text(mm1_text)
    s = load_scenario(p)
    assert s.scenario.name == "mm1"
    assert set(s.equipment) == {"server"}


def test_problem_format():
    assert Problem("a.b", "bad", 7).format("f.toml") == "f.toml:7: a.b: bad"
    assert Problem("a.b", "bad").format("f.toml") == "f.toml: a.b: bad"


def test_error_message_lists_every_problem_on_its_own_line(tmp_path, mm1_text):
    text = mutate(mm1_text, 'input = "queue"', 'input = "queue"\nservers = "two"')
    text = mutate(text, "mean_s = 0.9", "mean_s = -1")
    path, err = problems_of(tmp_path, text)
    assert err.file == str(path)
    lines = str(err).splitlines()
    assert lines == [p.format(err.file) for p in err.problems]
    assert len(lines) == len(err.problems) >= 2


# --- field errors -------------------------------------------------------------------------
def test_unknown_key_is_named_at_its_line(tmp_path, mm1_text):
    text = mutate(mm1_text, "process_time =", "proces_time =")
    path, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.proces_time")
    assert "unknown" in p.message
    assert p.line == line_of(text, "proces_time =")
    # the misspelt key leaves the real one missing: also reported, at its table
    missing = by_path(err, "equipment.server.process_time")
    assert "missing" in missing.message
    assert missing.line == line_of(text, "[equipment.server]")
    assert p.format(str(path)) == f"{path}:{p.line}: equipment.server.proces_time: {p.message}"


def test_unknown_top_level_table(tmp_path, mm1_text):
    text = mm1_text + "\n[equipmnt.server2]\nnode = \"station\"\n"
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipmnt")
    assert "unknown" in p.message
    assert p.line == line_of(text, "[equipmnt.server2]")


def test_wrong_type(tmp_path, mm1_text):
    text = mutate(mm1_text, 'input = "queue"', 'input = "queue"\nservers = "two"')
    _, err = problems_of(tmp_path, text)
    assert [q.path for q in err.problems] == ["equipment.server.servers"]
    p = err.problems[0]
    assert "two" in p.message
    assert p.line == line_of(text, 'servers = "two"')


def test_negative_duration_inside_distribution_table(tmp_path, mm1_text):
    text = mutate(mm1_text, "mean_s = 0.9", "mean_s = -1")
    _, err = problems_of(tmp_path, text)
    # the distribution tag ("exponential") is not part of the user-facing path
    assert [q.path for q in err.problems] == ["equipment.server.process_time.mean_s"]
    assert err.problems[0].line == line_of(text, "mean_s = -1")


def test_negative_duration_in_a_dotted_table(tmp_path, mm1_text):
    text = mutate(mm1_text, 'interarrival = { dist = "exponential", mean_s = 1.0 }',
                  '[sources.arrivals.interarrival]\ndist = "exponential"\nmean_s = -3.0')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "sources.arrivals.interarrival.mean_s")
    assert p.line == line_of(text, "mean_s = -3.0")


def test_problem_in_second_array_of_tables_entry(tmp_path, mm1_text):
    failure = ('\n[[equipment.server.failures]]\nname = "{n}"\n'
               'time_to_failure = {{ dist = "exponential", mean_s = 100.0 }}\n'
               'repair_time = {{ dist = "exponential", mean_s = {r} }}\n')
    text = mm1_text + failure.format(n="jam", r="5.0") + failure.format(n="leak", r="-2.0")
    _, err = problems_of(tmp_path, text)
    assert [p.path for p in err.problems] == ["equipment.server.failures[1].repair_time.mean_s"]
    assert err.problems[0].line == line_of(text, "mean_s = -2.0")


def test_unknown_distribution(tmp_path, mm1_text):
    text = mutate(mm1_text, 'dist = "exponential", mean_s = 0.9', 'dist = "expo", mean_s = 0.9')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.process_time")
    assert "expo" in p.message
    assert p.line == line_of(text, 'dist = "expo"')


def test_missing_required_field(tmp_path, mm1_text):
    text = mutate(mm1_text, 'next = "exit"\n', "")
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.next")
    assert "missing" in p.message
    assert p.line == line_of(text, "[equipment.server]")


def test_invalid_toml_reports_its_line(tmp_path, mm1_text):
    text = mutate(mm1_text, "seed = 1", "seed = ")
    _, err = problems_of(tmp_path, text)
    assert len(err.problems) == 1
    assert err.problems[0].line == line_of(text, "seed = ")


def test_warmup_not_shorter_than_horizon(tmp_path, mm1_text):
    text = mutate(mm1_text, "warmup_s = 5_000.0", "warmup_s = 500_000.0")
    _, err = problems_of(tmp_path, text)
    assert [q.path for q in err.problems] == ["scenario.warmup_s"]
    assert err.problems[0].line == line_of(text, "warmup_s = 500_000.0")


# --- references and the plant graph ---------------------------------------------------------
def test_reference_to_missing_buffer(tmp_path, mm1_text):
    text = mutate(mm1_text, 'input = "queue"', 'input = "nope"')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.input")
    assert "nope" in p.message
    assert p.line == line_of(text, 'input = "nope"')


def test_reference_to_missing_source_buffer(tmp_path, mm1_text):
    text = mutate(mm1_text, 'to = "queue"', 'to = "qeue"')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "sources.arrivals.to")
    assert "qeue" in p.message
    assert p.line == line_of(text, 'to = "qeue"')


def test_reference_to_missing_sink(tmp_path, mm1_text):
    text = mutate(mm1_text, 'next = "exit"', 'next = "nowhere"')
    _, err = problems_of(tmp_path, text)
    assert [q.path for q in err.problems] == ["equipment.server.next"]
    assert "nowhere" in err.problems[0].message
    assert err.problems[0].line == line_of(text, 'next = "nowhere"')


def test_reference_to_missing_reject_sink(tmp_path, mm1_text):
    text = mutate(mm1_text, 'next = "exit"',
                  'next = "exit"\nreject_probability = 0.1\nreject_to = "bin"')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.reject_to")
    assert "bin" in p.message
    assert p.line == line_of(text, 'reject_to = "bin"')


def test_reference_to_missing_node(tmp_path, mm1_text):
    text = mutate(mm1_text, '[buffers.queue]\nnode = "station"', '[buffers.queue]\nnode = "mars"')
    _, err = problems_of(tmp_path, text)
    assert [q.path for q in err.problems] == ["buffers.queue.node"]
    assert "mars" in err.problems[0].message
    assert err.problems[0].line == line_of(text, 'node = "mars"')


def test_link_to_missing_node(tmp_path, mm1_text):
    text = mm1_text + '\n[[links]]\na = "station"\nb = "moon"\n'
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "links[2].b")
    assert "moon" in p.message
    assert p.line == line_of(text, 'b = "moon"')


def test_reference_to_missing_product(tmp_path, mm1_text):
    text = mutate(mm1_text, 'product = "part"', 'product = "widget"')
    _, err = problems_of(tmp_path, text)
    assert [q.path for q in err.problems] == ["sources.arrivals.product"]
    assert "widget" in err.problems[0].message
    assert err.problems[0].line == line_of(text, 'product = "widget"')


def test_reference_to_missing_output_product(tmp_path, mm1_text):
    text = mutate(mm1_text, 'next = "exit"', 'next = "exit"\noutput = { product = "gizmo" }')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.output.product")
    assert "gizmo" in p.message
    assert p.line == line_of(text, 'output = { product = "gizmo" }')


def test_unreachable_hop_on_directed_graph(tmp_path, mm1_text):
    # the only link between station and exit now points the wrong way
    text = mutate(mm1_text, 'a = "station"\nb = "exit"', 'a = "exit"\nb = "station"\ndirected = true')
    _, err = problems_of(tmp_path, text)
    assert [q.path for q in err.problems] == ["equipment.server.next"]
    p = err.problems[0]
    assert "unreachable" in p.message and "exit" in p.message and "station" in p.message
    assert p.line == line_of(text, 'next = "exit"')


def test_unreachable_source_hop(tmp_path, mm1_text):
    text = mutate(mm1_text, 'a = "arrivals"\nb = "station"',
                  'a = "station"\nb = "arrivals"\ndirected = true')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "sources.arrivals.to")
    assert "unreachable" in p.message
    assert p.line == line_of(text, 'to = "queue"')


def test_disconnected_node_is_unreachable(tmp_path, mm1_text):
    text = mutate(mm1_text, '[[links]]\na = "station"\nb = "exit"\n', "")
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "equipment.server.next")
    assert "unreachable" in p.message


def test_duplicate_names_across_kinds(tmp_path, mm1_text):
    text = mutate(mm1_text, "[sinks.exit]", '[sinks.queue]\nnode = "exit"\n\n[sinks.exit]')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "sinks.queue")
    assert "queue" in p.message


def test_unknown_controller(tmp_path, mm1_text):
    text = mm1_text + '\n[controller]\nname = "nobody"\n'
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "controller.name")
    assert "nobody" in p.message
    assert p.line == line_of(text, 'name = "nobody"')


# --- probabilities ---------------------------------------------------------------------------
def test_branch_probabilities_must_sum_to_one(tmp_path, mm1_text):
    text = mutate(mm1_text, 'next = "exit"', 'next = [{ to = "exit", probability = 0.5 },'
                  ' { to = "exit", probability = 0.3 }]')
    _, err = problems_of(tmp_path, text)
    assert len(err.problems) == 1
    p = err.problems[0]
    assert "0.8" in p.message
    assert "next" in p.path + p.message


def test_branch_probabilities_problem_names_the_next_field(tmp_path, mm1_text):
    """The sum check is about ``next``: its path and line should be those of ``next``, not of
    the enclosing ``[equipment.server]`` table."""
    text = mutate(mm1_text, 'next = "exit"', 'next = [{ to = "exit", probability = 0.5 },'
                  ' { to = "exit", probability = 0.3 }]')
    _, err = problems_of(tmp_path, text)
    p = err.problems[0]
    assert p.path == "equipment.server.next"
    assert p.line == line_of(text, "next = [")


# Paths must be the user's field paths: no pydantic union/key tags such as ``constrained-str``,
# ``list[Branch]`` or ``[key]``, and one problem per mistake (not one per union member).
@pytest.mark.parametrize("old, new, path", [
    ('next = "exit"', 'next = [{ to = "exit", probability = 1.5 }]',
     "equipment.server.next[0].probability"),
    ('next = "exit"', 'next = [{ to = "exit", probability = 1.0, x = 1 }]',
     "equipment.server.next[0].x"),
    ('next = "exit"', "next = 3", "equipment.server.next"),
    ('next = "exit"', 'next = "exit"\nacting_state_s = { executing = 3 }',
     "equipment.server.acting_state_s.executing"),
], ids=["branch-probability", "branch-unknown-key", "next-wrong-type", "acting-state-key"])
def test_union_and_key_errors_have_clean_paths(tmp_path, mm1_text, old, new, path):
    text = mutate(mm1_text, old, new)
    _, err = problems_of(tmp_path, text)
    assert [p.path for p in err.problems] == [path]
    assert err.problems[0].line == line_of(text, new.splitlines()[-1])


def test_product_mix_reference(tmp_path, mm1_text):
    text = mutate(mm1_text, 'product = "part"', 'product_mix = { part = 0.5, bolt = 0.5 }')
    _, err = problems_of(tmp_path, text)
    p = by_path(err, "sources.arrivals.product_mix.bolt")
    assert "bolt" in p.message


# --- several problems at once -----------------------------------------------------------------
def test_several_problems_one_line_each(tmp_path, mm1_text):
    text = mutate(mm1_text, 'input = "queue"', 'input = "queue"\nservers = "two"\nspeed = 3')
    text = mutate(text, "mean_s = 0.9", "mean_s = -1")
    text = mutate(text, "horizon_s = 200_000.0", "horizon_s = -5.0")
    path, err = problems_of(tmp_path, text)
    expected = {
        "equipment.server.servers": line_of(text, 'servers = "two"'),
        "equipment.server.speed": line_of(text, "speed = 3"),
        "equipment.server.process_time.mean_s": line_of(text, "mean_s = -1"),
        "scenario.horizon_s": line_of(text, "horizon_s = -5.0"),
    }
    got = {p.path: p.line for p in err.problems}
    for field, line in expected.items():
        assert got.get(field) == line, (field, got)
    out = str(err).splitlines()
    assert len(out) == len(err.problems)
    for field, line in expected.items():
        assert sum(f"{path}:{line}: {field}: " in o for o in out) == 1


def test_several_reference_problems_are_all_reported(tmp_path, mm1_text):
    text = mutate(mm1_text, 'product = "part"', 'product = "widget"')
    text = mutate(text, 'next = "exit"', 'next = "nowhere"')
    text = mutate(text, '[buffers.queue]\nnode = "station"', '[buffers.queue]\nnode = "mars"')
    _, err = problems_of(tmp_path, text)
    paths = {p.path for p in err.problems}
    assert {"sources.arrivals.product", "equipment.server.next", "buffers.queue.node"} <= paths


# --- scenario-level validation of PackML settings ---------------------------------------------
def test_disabling_a_mandatory_packml_state_is_a_validation_problem(tmp_path, mm1_text):
    """Stopped, Execute and Aborted can never be disabled (the state machine refuses them):
    ``check`` should say so, instead of the run failing later while building the plant."""
    text = mutate(mm1_text, 'next = "exit"',
                  'next = "exit"\ndisabled_states = { Production = ["Stopped"] }')
    _, err = problems_of(tmp_path, text)
    p = err.problems[0]
    assert p.path.startswith("equipment.server.disabled_states")
    assert p.line == line_of(text, "disabled_states =")


# --- --set overrides ---------------------------------------------------------------------------
def test_override_applies():
    s = load_scenario("mm1", ["equipment.server.servers=2"])
    assert s.equipment["server"].servers == 2
    assert load_scenario("mm1").equipment["server"].servers == 1


def test_override_of_file_path(tmp_path, mm1_text):
    p = tmp_path / "ok.toml"
    p.write_text(mm1_text)
    s = load_scenario(p, ["scenario.horizon_s=1000", "scenario.warmup_s=10",
                          'equipment.server.process_time={dist = "constant", value_s = 0.5}'])
    assert s.scenario.horizon_s == 1000.0
    assert s.scenario.warmup_s == 10.0
    assert s.equipment["server"].process_time.dist == "constant"


def test_override_as_path_value_pair():
    s = load_scenario("mm1", [("equipment.server.servers", 3), ("scenario.warmup_s", 10.0)])
    assert s.equipment["server"].servers == 3
    assert s.scenario.warmup_s == 10.0
    with pytest.raises(ScenarioError) as info:
        load_scenario("mm1", [("equipment.server.servers", "two")])
    assert [p.path for p in info.value.problems] == ["equipment.server.servers"]


def test_bad_override_value_names_the_path():
    with pytest.raises(ScenarioError) as info:
        load_scenario("mm1", ["equipment.server.servers=-1"])
    (p,) = info.value.problems
    assert p.path == "equipment.server.servers"
    assert "--set" in p.message
    assert "equipment.server.servers" in p.format(info.value.file)


def test_bad_override_key_names_the_path():
    with pytest.raises(ScenarioError) as info:
        load_scenario("mm1", ["equipment.server.nope=1"])
    (p,) = info.value.problems
    assert p.path == "equipment.server.nope"
    assert "unknown" in p.message


def test_override_through_a_scalar_names_the_path():
    with pytest.raises(ScenarioError) as info:
        load_scenario("mm1", ["scenario.name.x=1"])
    assert [p.path for p in info.value.problems] == ["scenario.name.x"]


def test_override_without_equals_is_a_problem():
    with pytest.raises(ScenarioError) as info:
        load_scenario("mm1", ["scenario.horizon_s"])
    assert "scenario.horizon_s" in str(info.value)


def test_override_list_element_out_of_range():
    with pytest.raises(ScenarioError) as info:
        load_scenario("mm1", ["links[9].a=station"])
    assert [p.path for p in info.value.problems] == ["links[9]"]


# --- resolving names ------------------------------------------------------------------------------
def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError) as info:
        load_scenario("nosuchname")
    msg = str(info.value)
    for name in shipped_scenarios():
        assert name in msg


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError):
        load_scenario(tmp_path / "absent.toml")


def test_shipped_scenarios_are_the_documented_five():
    assert {"mm1", "mmc", "tandem", "jackson", "packaging-line"} <= set(shipped_scenarios())
    for name, path in shipped_scenarios().items():
        assert Path(path).is_file()
        assert load_scenario(name).scenario.name == name
