"""From the tracer's raw state to a :class:`~pruneopt.models.channels.graph.ChannelGraph`: final
group numbering, fixed groups folded into the coefficients (k = n), members and activation
points; the dense total is checked against the measured MACs."""

from __future__ import annotations

import numpy as np

from pruneopt.models.channels.graph import ChannelGraph, ModuleChannels
from pruneopt.models.channels.layouts import HARD, Layout


def assemble_graph(b, input_shape: tuple[int, ...]) -> ChannelGraph:
    uf = b.uf
    raw = range(1, len(uf.parent))
    index: dict[int, int] = {}
    roots: dict[int, int] = {}
    for g in raw:  # groups numbered by their first raw group (forward order)
        index[g] = roots.setdefault(uf.find(g), len(roots))
    G = max(index.values()) + 1 if index else 0
    sizes = np.zeros(G, dtype=np.int64)
    fixed = np.zeros(G, dtype=bool)
    reason = [""] * G
    producers: list[list[str]] = [[] for _ in range(G)]
    for g in raw:
        gi = index[g]
        sizes[gi] = uf.size[g]
        if uf.is_fixed(g):
            fixed[gi] = True
            if not reason[gi]:
                reason[gi] = b.reasons.get(g, "")
        producers[gi].extend(b.producers.get(g, []))
    for gi in range(G):
        if fixed[gi] and not reason[gi]:
            reason[gi] = "tied to a group that must be kept"

    # coefficients: fold every term with a fixed group in at k = n
    const = 0
    lin = np.zeros(G, dtype=np.int64)
    edge_acc: dict[tuple[int, int], int] = {}
    for coef, ga, gb in b.terms:
        if coef == 0:
            continue
        live = []
        for g in (ga, gb):
            if g is None:
                continue
            gi = index[g]
            if fixed[gi]:
                coef *= int(sizes[gi])
            else:
                live.append(gi)
        if not live:
            const += coef
        elif len(live) == 1:
            lin[live[0]] += coef
        else:
            key = (live[0], live[1])
            edge_acc[key] = edge_acc.get(key, 0) + coef
    edges = np.array(sorted(edge_acc), dtype=np.int64).reshape(-1, 2)
    edge_coef = np.array([edge_acc[tuple(e)] for e in edges.tolist()], dtype=np.int64)
    dense = const + int(lin @ sizes) + int(np.sum(edge_coef * sizes[edges[:, 0]]
                                                   * sizes[edges[:, 1]]))
    if dense != b.measured:
        raise RuntimeError(f"internal: dense MACs {dense} differ from the measured {b.measured}")

    def final(lay: Layout) -> tuple[np.ndarray, np.ndarray]:
        hard = lay.kind == HARD
        gid = np.full(len(lay), -1, dtype=np.int64)
        if hard.any():
            gid[hard] = np.array([index[int(g)] for g in lay.gid[hard]], dtype=np.int64)
        return gid, np.where(hard, lay.idx, -1)

    members: list[list[tuple[str, str]]] = [[] for _ in range(G)]
    modules: dict[str, ModuleChannels] = {}
    roles_in = {"conv": "in", "gconv": "in", "linear": "in", "bn": "bn", "ln": "norm",
                "gn": "norm", "depthwise": "dw", "map": "map", "fixed": "in"}
    for name, rec in b.records.items():
        kind = rec.kind
        if kind == "map" and not rec.resolved:
            kind = "fixed"  # its sources and its join were kept whole
        in_gid, in_idx = final(rec.inp)
        if rec.out is not None and kind != "fixed":
            out_gid, out_idx = final(rec.out)
        else:
            out_gid = out_idx = np.zeros(0, dtype=np.int64)
        modules[name] = ModuleChannels(name, kind, in_gid, in_idx, out_gid, out_idx,
                                       rec.src_pos if kind == "map" else None, rec.stride,
                                       rec.groups)
        seen = set()
        for g in np.unique(in_gid[in_gid >= 0]).tolist():
            seen.add((g, roles_in[kind] if kind != "map" else "map"))
        if kind in ("conv", "gconv", "linear"):
            for g in np.unique(out_gid[out_gid >= 0]).tolist():
                seen.add((g, "out"))
        elif kind == "map":
            for g in np.unique(out_gid[out_gid >= 0]).tolist():
                seen.add((g, "map"))
        for g, role in sorted(seen):
            members[g].append((name, role))
    params = {}
    for path, (dim, lay) in b.params.items():
        gid, idx = final(lay)
        params[path] = (int(dim), gid, idx)
        for g in np.unique(gid[gid >= 0]).tolist():
            members[g].append((path, "param"))
    # producers first, then the rest in forward order
    ordered = []
    for gi in range(G):
        outs = [(m, r) for m, r in members[gi] if r == "out"]
        rest = [(m, r) for m, r in members[gi] if r != "out"]
        ordered.append(tuple(outs + rest))
    names = []
    for gi in range(G):
        prod = producers[gi]
        base = prod[0] if prod else f"group{gi}"
        names.append(base if len(prod) <= 1 else f"{base}(+{len(prod) - 1} tied)")
    acts = []
    for module_name, g in b.act_points:
        gi = index[g]
        acts.append((module_name, np.full(sizes[gi], gi, dtype=np.int64),
                     np.arange(sizes[gi], dtype=np.int64)))
    ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return ChannelGraph(
        names=tuple(names), channel_ptr=ptr, fixed=fixed, fixed_reason=tuple(reason),
        members=tuple(ordered), edges=edges, edge_coef=edge_coef, linear_coef=lin,
        const=int(const), dense_macs=int(dense), modules=modules, activations=tuple(acts),
        unknown_ops=tuple(b.unknown), input_shape=input_shape, params=params)
