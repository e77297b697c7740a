"""``[layout]``: nodes and links from CSV and GraphML files, a generated grid of aisles, and
automatic parking for a fleet larger than its homes."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import networkx as nx
import pytest

from darkfab.scenarios import load_scenario
from darkfab.scenarios.layout import (AUTO_PARKING_SPACING_M, LINK_COLUMNS, NODE_COLUMNS)
from darkfab.scenarios.loader import ScenarioError
from darkfab.scenarios.schema import Link, Node

WAREHOUSE = Path(__file__).resolve().parents[2] / "scenarios" / "files" / "amr-warehouse.toml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_columns_follow_the_schema():
    assert set(NODE_COLUMNS) - {"name"} == set(Node.model_fields)
    assert set(LINK_COLUMNS) == set(Link.model_fields)


# --- CSV ----------------------------------------------------------------------------------
def _split_warehouse(tmp_path: Path) -> tuple[Path, dict]:
    """amr-warehouse with its corridor nodes and links moved to CSV files."""
    s = load_scenario("amr-warehouse")
    corridor = [n for n in s.nodes if n.startswith("w") or n == "aisle"]
    rows = ["name,x_m,y_m,role,capacity_robots"] + [
        f"{n},{s.nodes[n].x_m},{s.nodes[n].y_m},{s.nodes[n].role},{s.nodes[n].capacity_robots}"
        for n in corridor]
    write(tmp_path / "layout" / "nodes.csv", "\n".join(rows) + "\n")
    links = [lk for lk in s.links if lk.a in corridor and lk.b in corridor]
    rows = ["a,b,capacity_robots,speed_limit_m_s,directed"] + [
        f"{lk.a},{lk.b},{lk.capacity_robots},{lk.speed_limit_m_s or ''},false" for lk in links]
    write(tmp_path / "layout" / "links.csv", "\n".join(rows) + "\n")
    text = WAREHOUSE.read_text()
    doc = text.split("# --- main corridor")[0]  # header, products, ports
    rest = text.split("# --- chargers and parking")[1]
    rest_lines = rest.splitlines()
    keep, i = [], 0
    while i < len(rest_lines):  # drop the [[links]] between corridor nodes
        ln = rest_lines[i]
        if ln == "[[links]]":
            a = rest_lines[i + 1].split('"')[1]
            b = rest_lines[i + 2].split('"')[1]
            j = i + 1
            while j < len(rest_lines) and rest_lines[j] and not rest_lines[j].startswith(("[", "#")):
                j += 1
            if a in corridor and b in corridor:
                i = j
                continue
        keep.append(ln)
        i += 1
    body = doc + "[layout]\nnodes_csv = \"layout/nodes.csv\"\nlinks_csv = \"layout/links.csv\"\n" \
        + "# --- chargers and parking" + "\n".join(keep) + "\n"
    path = write(tmp_path / "split.toml", body)
    return path, s.model_dump(mode="json")


def test_csv_nodes_and_links_give_the_same_plant(tmp_path):
    path, original = _split_warehouse(tmp_path)
    s = load_scenario(path)
    got = s.model_dump(mode="json")
    assert got["nodes"] == original["nodes"]
    key = lambda lk: (lk["a"], lk["b"])  # noqa: E731
    assert sorted(got["links"], key=key) == sorted(original["links"], key=key)
    assert "layout" not in got  # the resolved scenario holds plain nodes and links


def test_csv_errors_name_the_file_and_line(tmp_path):
    path, _ = _split_warehouse(tmp_path)
    csv_nodes = tmp_path / "layout" / "nodes.csv"
    text = csv_nodes.read_text().splitlines()
    text[3] = text[3].replace(",2", ",two", 1)  # capacity_robots of the third node: line 4
    text.append("w9,1e999,0,waypoint,1")  # line 9: x_m overflows to inf
    text.append("store,0,0,storage,")  # line 10: defined in the TOML already
    csv_nodes.write_text("\n".join(text) + "\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    out = str(e.value).splitlines()
    assert any(ln.startswith(f"{csv_nodes}:4: capacity_robots: not an integer") for ln in out), out
    assert any(ln.startswith(f"{csv_nodes}:10: nodes.store: node 'store' is defined twice")
               for ln in out), out
    text.pop(-1)
    csv_nodes.write_text("\n".join(text).replace(",two", ",2") + "\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert str(e.value).startswith(f"{csv_nodes}:9: nodes.w9.x_m: ")
    links = tmp_path / "layout" / "links.csv"
    csv_nodes.write_text("\n".join(text[:-1]).replace(",two", ",2") + "\n")
    links.write_text(links.read_text() + "w0,nowhere,1,,false\n")
    n = len(links.read_text().splitlines())
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert any(ln.startswith(f"{links}:{n}: links[") and "unknown node 'nowhere'" in ln
               for ln in str(e.value).splitlines()), str(e.value)
    links.write_text("a,b,lanes\n")
    with pytest.raises(ScenarioError, match=rf"{links}:1: <header>: unknown column\(s\) 'lanes'"):
        load_scenario(path)
    links.unlink()
    with pytest.raises(ScenarioError, match=rf"{links}: <file>: cannot read the file"):
        load_scenario(path)


# --- GraphML ------------------------------------------------------------------------------
def test_graphml_nodes_and_edges(tmp_path):
    g = nx.Graph()
    g.add_node("q1", x_m=0.0, y_m=0.0, role="waypoint", capacity_robots=2)
    g.add_node("q2", x_m=30.0, y_m=40.0, role="waypoint")
    g.add_edge("q1", "q2", capacity_robots=2, speed_limit_m_s=0.8, label="main")
    nx.write_graphml(g, tmp_path / "plant.graphml")
    path = write(tmp_path / "s.toml", WAREHOUSE.read_text().replace(
        "[products.tablet_tote]", '[layout]\ngraphml = "plant.graphml"\n\n[products.tablet_tote]'))
    s = load_scenario(path)
    assert s.nodes["q1"].capacity_robots == 2 and s.nodes["q2"].role == "waypoint"
    link = next(lk for lk in s.links if {lk.a, lk.b} == {"q1", "q2"})
    assert (link.capacity_robots, link.speed_limit_m_s, link.directed) == (2, 0.8, False)
    assert s.link_length(link) == pytest.approx(50.0)  # 3-4-5 triangle, from the coordinates

    g.nodes["q2"]["x_m"] = "far"
    g.nodes["q1"]["colour"] = "red"
    nx.write_graphml(g, tmp_path / "plant.graphml")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    out = str(e.value)
    assert f"{tmp_path / 'plant.graphml'}: node 'q2': x_m: not a number: 'far'" in out
    assert f"{tmp_path / 'plant.graphml'}: node 'q1': colour: unknown attribute" in out
    (tmp_path / "plant.graphml").write_text("<graphml><graph>")
    with pytest.raises(ScenarioError, match="not a readable GraphML file"):
        load_scenario(path)


# --- grid ---------------------------------------------------------------------------------
GRID = """
[scenario]
name = "grid"
horizon_s = 3600.0
[products.p]
[nodes.src]
x_m = -10.0
y_m = 0.0
role = "storage"
[nodes.dst]
x_m = {far}
y_m = {far}
role = "dock"
[nodes.charger]
x_m = -10.0
y_m = 10.0
role = "charger"
[nodes.park]
x_m = -10.0
y_m = -10.0
role = "parking"
[layout.grid]
rows = {rows}
cols = {cols}
spacing_m = 5.0
aisle_capacity_robots = 2
prefix = "a"
[[links]]
a = "src"
b = "a0_0"
[[links]]
a = "charger"
b = "a0_0"
[[links]]
a = "park"
b = "a0_0"
[[links]]
a = "dst"
b = "a{r}_{c}"
[sources.in]
node = "src"
to = "inbox"
product = "p"
interarrival = {{ dist = "exponential", mean_s = 120.0 }}
[buffers.inbox]
node = "dst"
[equipment.m]
node = "dst"
input = "inbox"
process_time = {{ dist = "constant", value_s = 10.0 }}
next = "out"
[sinks.out]
node = "dst"
[fleet]
count = {count}
homes = ["park"]
auto_parking = {auto}
speed_empty_m_s = 1.0
speed_loaded_m_s = 1.0
load_time = {{ dist = "constant", value_s = 5.0 }}
unload_time = {{ dist = "constant", value_s = 5.0 }}
battery = {{ capacity_kwh = 1.0, consumption_empty_kwh_per_m = 0.0, consumption_loaded_kwh_per_m = 0.0, charging_kw = 1.0 }}
"""


def grid(tmp_path: Path, rows=3, cols=4, count=1, auto="false") -> Path:
    far = 5.0 * (max(rows, cols) - 1) + 5.0
    return write(tmp_path / "grid.toml", GRID.format(rows=rows, cols=cols, far=far, r=rows - 1,
                                                     c=cols - 1, count=count, auto=auto))


def test_grid_nodes_and_lanes(tmp_path):
    s = load_scenario(grid(tmp_path, 3, 4))
    aisles = {n: v for n, v in s.nodes.items() if n.startswith("a")}
    assert len(aisles) == 12
    assert (aisles["a2_3"].x_m, aisles["a2_3"].y_m) == (15.0, 10.0)
    assert all(v.role == "waypoint" and v.capacity_robots == 2 for v in aisles.values())
    lanes = [lk for lk in s.links if lk.a in aisles and lk.b in aisles]
    assert len(lanes) == 3 * 3 + 2 * 4  # rows × (cols-1) + (rows-1) × cols
    assert all(s.link_length(lk) == 5.0 and lk.capacity_robots == 2 for lk in lanes)
    g = s.graph(lanes_only=True).subgraph(aisles)
    # Manhattan distance between opposite corners of the grid
    assert nx.shortest_path_length(g, "a0_0", "a2_3", weight="length_m") == 5.0 * (2 + 3)


def test_a_200_node_grid_validates_and_runs(tmp_path):
    from darkfab.scenarios import run_scenario

    s = load_scenario(grid(tmp_path, 10, 20))
    assert len(s.nodes) == 204
    res = run_scenario(s, out_dir=tmp_path / "run")
    assert res.summary["units_completed"] > 0


def test_grid_errors_name_the_layout_lines(tmp_path):
    path = grid(tmp_path)
    path.write_text(path.read_text().replace("rows = 3", "rows = 0"))
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    line = path.read_text().splitlines().index("rows = 0") + 1
    assert str(e.value).startswith(f"{path}:{line}: layout.grid.rows: ")
    path = grid(tmp_path)
    path.write_text(path.read_text().replace("[nodes.park]", "[nodes.a1_1]\nx_m = 0.0\ny_m = 0.0"
                                             "\n[nodes.park]"))
    with pytest.raises(ScenarioError, match=r"layout.grid\]?.*nodes.a1_1: node 'a1_1' is defined "
                                            "twice|nodes.a1_1: node 'a1_1' is defined twice"):
        load_scenario(path)


# --- parking ------------------------------------------------------------------------------
def test_more_robots_than_homes_is_an_error_naming_both_fields(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(grid(tmp_path, count=3))
    msg = str(e.value)
    assert "fleet.count = 3" in msg and "fleet.homes (got 1)" in msg and "auto_parking" in msg
    with pytest.raises(ScenarioError, match="auto_parking"):
        load_scenario("amr-warehouse", ["fleet.count=8"])


def test_auto_parking_adds_sibling_spurs_beside_the_homes(tmp_path):
    s = load_scenario(grid(tmp_path, count=3, auto="true"))
    assert s.fleet.homes == ["park", "park_p1", "park_p2"]
    home = s.nodes["park"]
    for j, name in ((1, "park_p1"), (2, "park_p2")):
        n = s.nodes[name]
        assert n.role == "parking"
        # perpendicular to the lane park - a0_0 (along +x), j spacings out
        assert math.hypot(n.x_m - home.x_m, n.y_m - home.y_m) == pytest.approx(
            j * AUTO_PARKING_SPACING_M)
        assert (n.x_m - home.x_m) * (0.0 - home.x_m) + (n.y_m - home.y_m) * (0.0 - home.y_m) \
            == pytest.approx(0.0)
        assert any({lk.a, lk.b} == {name, "a0_0"} for lk in s.links)

    w = load_scenario("amr-warehouse", ["fleet.count=8", "fleet.auto_parking=true"])
    assert w.fleet.homes[6:] == ["park_1_p1", "park_2_p1"]
    assert {(lk.a, lk.b) for lk in w.links if "park_1_p1" in (lk.a, lk.b)} == {("w0", "park_1_p1")}
