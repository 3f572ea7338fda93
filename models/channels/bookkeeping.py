"""Groups and ties while tracing: union-find helpers (fix, tie, materialise), new output groups
(folded or partitioned as the specs ask), and the requests a pass records for the next one
(:meth:`GroupBookkeeping.resolved_specs`). A mixin of :class:`~pruneopt.models.channels.
builder.GraphBuilder`."""

from __future__ import annotations

import math

import numpy as np

from pruneopt.models.channels.layouts import FIXED, HARD, SOFT, Layout


class GroupBookkeeping:
    """Union-find bookkeeping of the builder (its ``uf``, ``reasons``, ``specs``, ``requests``)."""

    # ------------------------------------------------------------------ union-find helpers
    def _fix(self, groups, reason: str) -> None:
        for g in np.unique(np.asarray(groups, dtype=np.int64)):
            g = int(g)
            if g < 0:
                continue
            if not self.uf.is_fixed(g):
                self.reasons.setdefault(self.uf.find(g), reason)
            self.reasons.setdefault(g, reason)
            self.uf.fix(g)

    def _fix_layout(self, lay: Layout | None, reason: str) -> None:
        if lay is not None:
            self._fix(lay.gid[(lay.kind == HARD) | (lay.kind == SOFT)], reason)

    def _materialize(self, lay: Layout, reason: str) -> Layout:
        """SOFT → FIXED (its source group fixed), ZERO → FIXED: for consumers other than an add."""
        if lay.plain:
            return lay
        soft = lay.kind == SOFT
        self._fix(lay.gid[soft], reason)
        kind = np.where(lay.kind == HARD, HARD, FIXED).astype(np.int8)
        gid = np.where(kind == HARD, lay.gid, -1)
        idx = np.where(kind == HARD, lay.idx, -1)
        return Layout(kind, gid, idx)

    def _tie(self, a: Layout, b: Layout, reason: str) -> None:
        """Positions of two plain layouts of one length are the same channel."""
        both = (a.kind == HARD) & (b.kind == HARD)
        one = (a.kind == HARD) != (b.kind == HARD)  # HARD meets FIXED: must keep it
        if one.any():
            self._fix(np.concatenate((a.gid[one & (a.kind == HARD)],
                                      b.gid[one & (b.kind == HARD)])), reason)
        if not both.any():
            return
        ga, gb, ia, ib = a.gid[both], b.gid[both], a.idx[both], b.idx[both]
        pairs = np.unique(np.stack([ga, gb], axis=1), axis=0)
        for g, h in pairs.tolist():
            sel = (ga == g) & (gb == h)
            if g == h and np.all(ia[sel] == ib[sel]):
                continue
            if g != h and np.all(ia[sel] == ib[sel]) and self.uf.size[g] == self.uf.size[h] \
                    and np.unique(ia[sel]).size == self.uf.size[g]:
                self.uf.union(g, h)  # channel i of g is channel i of h
            else:
                # a permuted or partial correspondence: not expressible with counts
                self._fix([g, h], f"{reason} (channels do not correspond one to one)")

    def _group(self, n: int, producer: str) -> int:
        g = self.uf.add(n)
        self.producers[g] = [producer]
        return g

    def _new_output(self, name: str, c_out: int, fold: int = 1) -> Layout:
        """The output layout of a producing module: one new group of c_out channels, folded by
        ``fold`` (and by its spec), partitioned by its spec's labels."""
        period = c_out // fold
        spec = self.specs.get(name, {})
        want = spec.get("period")
        if want and period % want == 0:
            period = want
        labels = spec.get("labels")
        if labels is None or len(labels) != period:
            labels = np.zeros(period, dtype=np.int64)
        uniq, inv = np.unique(labels, return_inverse=True)
        unit_gid = np.empty(period, dtype=np.int64)
        unit_idx = np.empty(period, dtype=np.int64)
        for li in range(uniq.size):
            sel = inv == li
            tag = name if uniq.size == 1 else f"{name}[{li + 1}/{uniq.size}]"
            g = self._group(int(sel.sum()), tag)
            self.group_units[g] = (name, np.flatnonzero(sel), period)
            unit_gid[sel] = g
            unit_idx[sel] = np.arange(int(sel.sum()))
        reps = c_out // period
        return Layout(np.full(c_out, HARD, np.int8), np.tile(unit_gid, reps),
                      np.tile(unit_idx, reps))

    # ------------------------------------------------------------------ requests
    def _request_period(self, lay: Layout, slices: int, reason: str) -> bool:
        """Ask for the producers of ``lay`` to fold so that its ``slices`` slices are equal.
        Possible when the layout is one group class, every position HARD, in the group's
        (possibly folded) order. Returns False (and the caller fixes) otherwise."""
        n = len(lay)
        if not self.allow_requests or n % slices or not np.all(lay.kind == HARD):
            return False
        gids = np.unique(lay.gid)
        if gids.size != 1:
            return False
        g = int(gids[0])
        size = self.uf.size[g]
        if not np.array_equal(lay.idx, np.arange(n) % size):
            return False
        want = math.gcd(size, n // slices)
        self.requests.append(("period", g, want, reason))
        return True

    def _request_parts(self, lay: Layout, reason: str) -> bool:
        """A conv reads part of a group: ask for the part to become a group of its own."""
        if not self.allow_requests:
            return False
        hard = lay.kind == HARD
        for g in np.unique(lay.gid[hard]).tolist():
            mask = np.zeros(self.uf.size[g], dtype=bool)
            mask[lay.idx[hard & (lay.gid == g)]] = True
            if not mask.all():
                self.requests.append(("part", g, mask, reason))
        return True

    # ------------------------------------------------------------------ node dispatch
    # ------------------------------------------------------------------ between passes
    def resolved_specs(self) -> tuple[dict, bool]:
        """The producer specs for the next pass (this pass's specs refined by its requests),
        and whether anything changed."""
        specs = {k: dict(v) for k, v in self.specs.items()}
        changed = False
        members: dict[int, list[int]] = {}
        for g in range(1, len(self.uf.parent)):
            members.setdefault(self.uf.find(g), []).append(g)
        for req in self.requests:
            kind, g = req[0], req[1]
            for h in members[self.uf.find(g)]:
                if h not in self.group_units:
                    continue
                name, units, period = self.group_units[h]
                spec = specs.setdefault(name, {})
                labels = spec.get("labels")
                if kind == "period":
                    if labels is not None and np.unique(labels).size > 1:
                        continue  # a partitioned group is not folded as well
                    new = math.gcd(period, req[2])
                    if new < period:
                        spec["period"] = new
                        spec.pop("labels", None)
                        changed = True
                    continue
                if labels is None or labels.size != period:
                    labels = np.zeros(period, dtype=np.int64)
                mark = np.zeros(period, dtype=np.int64)
                mark[units[req[2]]] = 1
                new = np.unique(labels * 2 + mark, return_inverse=True)[1].astype(np.int64)
                if np.unique(new).size != np.unique(labels).size:
                    spec["labels"] = new
                    spec["period"] = period
                    changed = True
        return specs, changed


