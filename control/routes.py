"""Free-flow geometry of the robot layout: distances, shortest paths, paths around blocked lanes.

Everything here ignores other robots (the reservation table and SIPP in
:mod:`darkfab.control.traffic` do not): it serves task allocation (travel-time bids), charger
choice, deadlock escapes and the fall-back leg when no conflict-free timing exists. Lengths in
metres, times in seconds.
"""

from __future__ import annotations

from collections.abc import Hashable

import networkx as nx

from .traffic import INF, Lane, Step, predecessors

__all__ = ["Routes"]


class Routes:
    """The lane graph with cached distances and paths.

    Parameters
    ----------
    lanes:
        Every lane once, as given (from ``a`` to ``b``).
    directed:
        Per lane key, whether it is one-way; a two-way lane gets its reverse too.
    chargers:
        Charger nodes, for the distance from each node to its nearest charger.
    """

    def __init__(self, lanes: list[Lane], directed: dict[Hashable, bool],
                 chargers: list[str]) -> None:
        self.adjacency: dict[str, list[tuple[str, Lane]]] = {}
        self.graph = nx.DiGraph()
        for lane in lanes:
            self.adjacency.setdefault(lane.a, []).append((lane.b, lane))
            self.graph.add_edge(lane.a, lane.b, length_m=lane.length_m, lane=lane)
            if not directed[lane.key]:
                back = Lane(lane.key, lane.b, lane.a, lane.length_m, lane.speed_limit_m_s)
                self.adjacency.setdefault(lane.b, []).append((lane.a, back))
                self.graph.add_edge(lane.b, lane.a, length_m=lane.length_m, lane=back)
        self.preds = predecessors(self.adjacency)
        self.dist = dict(nx.all_pairs_dijkstra_path_length(self.graph, weight="length_m"))
        # both directions of a lane, for hiding a blocked lane from the graph
        self._lane_edges: dict[Hashable, list[tuple[str, str]]] = {}
        for u, v, ln in self.graph.edges(data="lane"):
            self._lane_edges.setdefault(ln.key, []).append((u, v))
        self._paths: dict[tuple[str, str], list[str] | None] = {}
        self._around: tuple[frozenset, dict] = (frozenset(), {})
        self._dist_to: dict[str, dict[str, float]] = {}
        self._has_chargers = bool(chargers)
        self._charger_m = {n: min((self.d(n, c) for c in chargers), default=0.0)
                           for n in self.graph}

    def d(self, a: str, b: str) -> float:
        """Free-flow path length (m) from ``a`` to ``b`` (``inf`` if there is none)."""
        return self.dist.get(a, {}).get(b, INF)

    def to_charger_m(self, node: str) -> float:
        """Free-flow distance (m) from ``node`` to its nearest charger (0 without chargers)."""
        return self._charger_m.get(node, INF if self._has_chargers else 0.0)

    def dist_to(self, goal: str) -> dict[str, float]:
        """Free-flow path length (m) from every node to ``goal`` (cached per goal)."""
        d = self._dist_to.get(goal)
        if d is None:
            d = self._dist_to[goal] = nx.single_source_dijkstra_path_length(
                self.graph.reverse(copy=False), goal, weight="length_m")
        return d

    def path(self, start: str, goal: str) -> list[str] | None:
        """Free-flow shortest path (nodes) from ``start`` to ``goal``, cached; ``None`` if none."""
        key = (start, goal)
        if key not in self._paths:
            try:
                self._paths[key] = nx.shortest_path(self.graph, start, goal, weight="length_m")
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                self._paths[key] = None
        return self._paths[key]

    def path_m(self, path: list[str]) -> float:
        """Length (m) of ``path`` (nodes)."""
        return sum(self.graph[u][v]["length_m"] for u, v in zip(path, path[1:]))

    def lane(self, u: str, v: str) -> Lane:
        """The lane from ``u`` to ``v``."""
        return self.graph[u][v]["lane"]

    def path_around(self, start: str, goal: str, blocked: frozenset) -> list[str] | None:
        """Shortest path around the ``blocked`` lanes and nodes; cached while the blocked set
        stays the same (robots waiting for a stalled lane ask again and again)."""
        if self._around[0] != blocked:
            self._around = (blocked, {})
        cache = self._around[1]
        if (start, goal) not in cache:
            g = nx.restricted_view(
                self.graph, [k[1] for k in blocked if k[0] == "node"],
                [e for k in blocked if k[0] == "lane" for e in self._lane_edges.get(k, ())])
            try:
                cache[start, goal] = nx.shortest_path(g, start, goal, weight="length_m")
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                cache[start, goal] = None
        return cache[start, goal]

    def steps(self, path: list[str], speed: float, now: float) -> list[Step]:
        """Free-flow steps along ``path`` (nodes), setting off at ``now`` at ``speed`` (m/s),
        each lane at most at its speed limit."""
        steps, t = [], now
        for u, v in zip(path, path[1:]):
            lane = self.graph[u][v]["lane"]
            d = lane.length_m / min(speed, lane.speed_limit_m_s)
            steps.append(Step(lane, u, v, t, t + d))
            t += d
        return steps

    def shortest(self, start: str, goal: str, speed: float, now: float,
                 blocked) -> list[Step] | None:
        """Free-flow steps of the shortest path, around ``blocked`` lanes and nodes if it
        passes one; ``None`` if no path avoids them."""
        path = self.path(start, goal)
        if path is None:
            return None
        if blocked and (any(("node", v) in blocked for v in path) or any(
                self.graph[u][v]["lane"].key in blocked for u, v in zip(path, path[1:]))):
            path = self.path_around(start, goal, blocked)
            if path is None:
                return None
        return self.steps(path, speed, now)

    def free_paths(self, start: str, room) -> dict[str, list[str]]:
        """Shortest paths (nodes) from ``start`` over the lanes and nodes for which
        ``room(key)`` is true."""
        graph = self.graph
        view = nx.subgraph_view(
            graph, filter_node=lambda n: room(("node", n)),
            filter_edge=lambda u, v: room(graph[u][v]["lane"].key))
        return nx.single_source_dijkstra_path(view, start, weight="length_m")
