#!/usr/bin/env python3
"""Perfect-foresight optimum and unmanaged reference for a v2x-scenario/1 directory.

    optimum.py SCENARIO_DIR [--trace TRACE_DIR] [--json] [--months N] [--ride-through-hours H]

OPTIMAL: one linear program over the whole scenario (or its first N calendar months) at
the interval resolution, knowing every load value, session, event and outage in advance,
solved with HiGHS through scipy. No causal controller can know the future, and the
program relaxes the physics further (interval means instead of minute steps, any split
of an interval's energy), so every trace that obeys the rules bench/check_trace.py
checks costs at least this optimum: it is a LOWER BOUND on the cost of any controller,
not a cost some controller can be expected to reach.

With --ride-through-hours H the optimum also keeps issue 16's promise (no vehicle leaves
shorter than charge-on-arrival would, for an outage of up to H hours beginning at any
interval end of its stay; see ride_through_floor): the lower bound for a controller that
keeps it, and so what the rule itself costs when the future is known.

Variables, kWh at the building side, per session s and interval t it is plugged in:
charge c[s,t] <= max_charge_kw*h, discharge d[s,t] <= max_discharge_kw*h, battery energy
e[s,t] in [0, battery_kwh] at the interval's end, e = e_prev + eff*c - d/eff from
arrive_kwh. Per grid-connected interval: import imp and export exp with
served + sum(c-d)/h = imp - exp (served = building_kw), imp <= import_limit_kw,
exp <= export_limit_kw (event_export_limit_kw inside a DR event). Monthly peak
P[m] >= imp - exp over the month's intervals, P >= 0. Departure: e at the last plugged
interval + short[s] >= depart_min_kwh (sessions leaving after the horizon are free).
Outage intervals: no charging, no grid, served = sum d/h <= critical_load_fraction *
building, discharge only while a grid-forming charger has a vehicle plugged in,
unserved u >= critical - served. Reserve: e >= min(reserve_kwh, arrive_kwh) outside
outages. Objective: exactly SCENARIO.md's cost, demand_charge * sum P + price * imp * h
- credit * exp * h - dr_payment_per_kw * (mean over events of the event's mean of
sum (d-c)/h, which is linear) + shortfall and unserved penalties. Requires
energy_price >= export_credit (otherwise the energy cost is not convex in grid_kw).

Two details around outages keep it a true relaxation of the rules check_trace.py
enforces (the plain "e >= reserve outside outages" is not: it would forbid draining a
vehicle in an outage when it cannot be recharged to its reserve within one interval):
  * The reserve rule is "discharging never takes a vehicle below its reserve except to
    carry critical load in an outage". A vehicle drained in an outage may stay below its
    reserve afterwards, but may not discharge until it is back above it. That is not
    convex, so sessions that overlap an outage get, in their grid-connected intervals
    after it, a binary z ("discharge allowed"): d <= dmax * z, e >= reserve * z, z
    non-decreasing along the stretch. It is exact, needs a few hundred to a few thousand
    binaries a year, and makes the program a small MILP (scipy.optimize.milp); without
    outages it is a plain LP (scipy.optimize.linprog). Other sessions keep e >= reserve.
  * The enter-service interval after an outage (IEEE 1547: the site stays islanded at
    least check_trace.ENTER_SERVICE_DELAY_MIN minutes after the utility returns): the
    checker lets the served load fall short of demand there, without a limit or a
    penalty, and lets vehicles discharge below their reserve. So served is a variable in
    [0, building] there and the reserve binaries leave that interval free.

UNMANAGED: SCENARIO.md's reference, computed here independently of the simulator: each
vehicle charges at full power from arrival until it holds depart_min_kwh (battery-limited,
the last interval partial), never discharges, cannot charge in an outage, and the
building is dark in an outage. Its interval rows are costed with check_trace.costs(),
like the optimum's rows and the trace, so all three use one cost definition.

--trace DIR: check a simulator trace with check_trace.check() (restricted to the horizon
when --months is given) and print its cost, the score
(cost_unmanaged - cost) / (cost_unmanaged - cost_optimal) and the gap to the optimum by
cost component. Exit status 0, or 2 on unreadable input.
"""
import json
import os
import shutil
import sys
import tempfile
import time

def _import_solver():
    """numpy and scipy (HiGHS), installed with pip on first use if missing (as
    scripts/setup does, falling back to --break-system-packages on a Debian system
    Python); a failed install is reported, not retried."""
    global np, scipy, sparse, Bounds, LinearConstraint, linprog, milp
    for attempt in (1, 2):
        try:
            import numpy as np
            import scipy
            from scipy import sparse
            from scipy.optimize import Bounds, LinearConstraint, linprog, milp
            return
        except ImportError as e:
            if attempt == 2:
                print(f"optimum.py: needs numpy and scipy >= 1.9 (HiGHS) ({e}); the pip install failed",
                      file=sys.stderr)
                sys.exit(2)
            print(f"optimum.py: {e}; installing numpy and scipy with pip", file=sys.stderr)
        import subprocess
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "numpy", "scipy>=1.9"]
        if subprocess.run(pip).returncode != 0:
            subprocess.run(pip + ["--break-system-packages"])


_import_solver()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_trace  # noqa: E402  (the independent checker: scenario loading, costs(), check())


class InputError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# Scenario, horizon, calendar

class Site:
    """A scenario read with check_trace.load_scenario(), laid out on the interval grid."""

    def __init__(self, directory, months=None):
        try:
            sc, load, sessions = check_trace.load_scenario(directory)
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise InputError(f"cannot read scenario {directory}: {e}")
        try:
            self._setup(directory, sc, load, sessions, months)
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as e:
            raise InputError(f"bad scenario {directory}: {e!r}")

    def _setup(self, directory, sc, load, sessions, months):
        self.dir = directory
        self.sc, self.load, self.sessions = sc, load, sessions
        self.name = sc.get("name") or os.path.basename(os.path.normpath(directory))
        self.step = int(sc["interval_minutes"])
        if self.step <= 0:
            raise ValueError("interval_minutes must be positive")
        self.h = self.step / 60.0
        n_full = int(sc["duration_minutes"]) // self.step
        if n_full <= 0 or not load or load[0][0] != 0:
            raise ValueError("need a positive duration and a load.csv starting at minute 0")
        start = np.datetime64(sc["start"], "m")
        month_of = (start + np.arange(n_full) * self.step).astype("datetime64[M]")
        if months is not None:
            first = month_of[0]
            keep = month_of < first + np.timedelta64(months, "M")
            n = int(keep.sum())
        else:
            n = n_full
        self.n_full, self.n = n_full, n
        self.end_minute = n * self.step
        self.full = n == n_full
        labels, self.month = np.unique(month_of[:n], return_inverse=True)
        self.month_labels = [str(x) for x in labels]   # "YYYY-MM", like check_trace.costs()
        self.minutes = np.arange(n) * self.step

        load_minutes = [m for m, _ in load]
        self.building = np.array([check_trace.building_mean(load, int(m), self.step, load_minutes)
                                  for m in self.minutes])
        site = sc["site"]
        self.critical_fraction = float(site["critical_load_fraction"])
        self.import_limit = float(site["import_limit_kw"])
        self.export_limit = float(site["export_limit_kw"])
        self.event_export_limit = float(site["event_export_limit_kw"])
        self.tariff = {k: float(v) for k, v in sc["tariff"].items()}
        if self.tariff["export_credit_per_kwh"] > self.tariff["energy_price_per_kwh"]:
            raise ValueError("export_credit_per_kwh above energy_price_per_kwh is not supported "
                             "(the cost is then not convex in the grid exchange)")

        self.outages = [(int(o["start_minute"]), int(o["end_minute"])) for o in sc["outages"]]
        self.outage = np.zeros(n, bool)
        self.after = np.zeros(n, bool)  # the enter-service interval(s) after an outage
        wait = max(self.step, check_trace.ENTER_SERVICE_DELAY_MIN)
        for a, b in self.outages:
            self._aligned(a, b)
            self.outage[(self.minutes >= a) & (self.minutes < b)] = True
        for a, b in self.outages:
            self.after[(self.minutes >= b) & (self.minutes < b + wait)] = True
        self.after &= ~self.outage

        # Events wholly inside the horizon count, as check_trace.costs() counts them.
        self.events = []
        self.event_limit = np.zeros(n, bool)
        for e in sc["dr_events"]:
            a, b = int(e["start_minute"]), int(e["end_minute"])
            self._aligned(a, b)
            self.event_limit[(self.minutes >= a) & (self.minutes < b)] = True
            if b <= self.end_minute and b > a:
                self.events.append((e.get("id", "?"), a // self.step, b // self.step))

        self.chargers = {c["id"]: c for c in sc["chargers"]}
        self.vehicles = {v["id"]: v for v in sc["vehicles"]}
        self.plugged = []   # sessions inside the horizon, with their interval range
        for i, s in enumerate(sessions):
            self._aligned(s["arrive"], s["depart"])
            if s["vehicle"] not in self.vehicles or s["charger"] not in self.chargers:
                raise ValueError(f"session {i + 1}: unknown vehicle or charger")
            if s["arrive"] >= self.end_minute or s["depart"] <= s["arrive"]:
                continue
            v = self.vehicles[s["vehicle"]]
            if s["arrive_kwh"] > v["battery_kwh"] + 1e-9 or s["arrive_kwh"] < 0:
                raise ValueError(f"session {i + 1}: arrive_kwh outside the battery")
            t0 = s["arrive"] // self.step
            t1 = min(s["depart"], self.end_minute) // self.step
            self.plugged.append(dict(s, t0=t0, t1=t1, departs=s["depart"] <= self.end_minute,
                                     charger_spec=self.chargers[s["charger"]], vehicle_spec=v))
        # Intervals in which some grid-forming charger has a vehicle plugged in.
        self.island_ok = np.zeros(n, bool)
        for s in self.plugged:
            if s["charger_spec"].get("grid_forming"):
                self.island_ok[s["t0"]:s["t1"]] = True

    def _aligned(self, *minutes):
        for m in minutes:
            if m % self.step:
                raise ValueError(f"minute {m} is not a multiple of interval_minutes {self.step}")

    def intervals_dict(self, served, ev, grid):
        return {int(m): (float(b), float(s), float(e), float(g))
                for m, b, s, e, g in zip(self.minutes, self.building, served, ev, grid)}

    def costs(self, served, ev, grid, shortfall_kwh):
        return check_trace.costs(self.sc, self.intervals_dict(served, ev, grid), self.step,
                                 shortfall_kwh, self.outages)


# ---------------------------------------------------------------------------------------
# The linear program

def ride_through_floor(site, P, offs, region, hours):
    """The least battery energy, per session and interval end, of any controller that keeps
    issue 16's promise for outages up to `hours`: an outage beginning at the end of the
    interval must not leave the vehicle shorter than charge-on-arrival would. The outage
    (plus the 5-minute enter-service wait) stops charging in both; afterwards the best
    either can do is full rate. So the energy must be at least the lower of what
    charge-on-arrival holds by then and what full rate after the outage cannot make up:
    `min(U(t), need - R*eff*(depart - t - outage)+)`. A necessary condition at interval
    ends only, so the program stays a relaxation (a lower bound) of such a controller.
    Not applied from a session's first real outage on (the scenario's own outages break
    the comparison there)."""
    K = int(offs[-1])
    floor = np.zeros(K)
    stop = hours * 60.0 + check_trace.ENTER_SERVICE_DELAY_MIN
    for i, s in enumerate(P):
        ch = s["charger_spec"]
        rate = float(ch["max_charge_kw"]) * float(ch["efficiency"]) / 60.0   # kWh per minute
        target = min(s["need"], float(s["vehicle_spec"]["battery_kwh"]))
        for j, (_, _, on_arrival) in enumerate(charge_on_arrival(site, s)):
            k = offs[i] + j
            if region[k]:
                break
            end = (s["t0"] + j + 1) * site.step
            after = rate * max(0.0, s["depart"] - end - stop)
            floor[k] = max(0.0, min(on_arrival, target - after))
    return floor


def solve_optimum(site, integer=True, time_limit=900.0, ride_through_hours=0.0):
    n, h, T = site.n, site.h, site.tariff
    P = site.plugged
    lengths = np.array([s["t1"] - s["t0"] for s in P], dtype=np.int64)
    K = int(lengths.sum())
    offs = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    t_of = np.concatenate([np.arange(s["t0"], s["t1"]) for s in P]) if P else np.zeros(0, np.int64)
    sess_of = np.repeat(np.arange(len(P)), lengths)
    eff = np.array([float(s["charger_spec"]["efficiency"]) for s in P])[sess_of]
    cmax = np.array([float(s["charger_spec"]["max_charge_kw"]) for s in P])[sess_of] * h
    dmax = np.array([float(s["charger_spec"]["max_discharge_kw"]) for s in P])[sess_of] * h
    cap = np.array([float(s["vehicle_spec"]["battery_kwh"]) for s in P])[sess_of]
    floor_s = np.array([min(float(s["vehicle_spec"]["reserve_kwh"]), s["arrive_kwh"]) for s in P])
    floor = floor_s[sess_of] if P else np.zeros(0)
    out_k = site.outage[t_of]
    after_k = site.after[t_of]

    # Sessions that overlap an outage (or an enter-service interval): the "region" from
    # their first such interval on.
    region = np.zeros(K, bool)
    for i, s in enumerate(P):
        o = np.nonzero((site.outage | site.after)[s["t0"]:s["t1"]])[0]
        if len(o):
            region[offs[i] + o[0]:offs[i + 1]] = True
    # In those, the normal intervals get z[k] in {0,1}: "discharge allowed", with
    # d <= dmax*z and e >= floor*z. z = 0 forbids discharge (so e cannot fall); z = 1
    # keeps e at or above the reserve. z is non-decreasing along a stretch of normal
    # intervals (once back at its reserve a vehicle never needs to give that up).
    zk = np.nonzero(region & ~out_k & ~after_k)[0]
    Z = len(zk)
    normal_t = np.nonzero(~site.outage)[0]
    outage_t = np.nonzero(site.outage)[0]
    after_t = np.nonzero(site.after)[0]
    departing = [i for i, s in enumerate(P) if s["departs"]]
    M = len(site.month_labels)

    # Column layout.
    C0, D0, E0 = 0, K, 2 * K
    IMP0 = 3 * K
    EXP0 = IMP0 + n
    P0 = EXP0 + n
    S0 = P0 + M
    U0 = S0 + len(departing)
    SIG0 = U0 + len(outage_t)
    Z0 = SIG0 + len(after_t)
    nvar = Z0 + Z

    lb = np.zeros(nvar)
    ub = np.full(nvar, np.inf)
    cost = np.zeros(nvar)
    ub[C0:C0 + K] = np.where(out_k, 0.0, cmax)
    ub[D0:D0 + K] = np.where(out_k & ~site.island_ok[t_of], 0.0, dmax)
    lb[E0:E0 + K] = np.where(out_k | region, 0.0, floor)
    if ride_through_hours > 0:
        lb[E0:E0 + K] = np.maximum(lb[E0:E0 + K], ride_through_floor(site, P, offs, region, ride_through_hours))
    ub[E0:E0 + K] = cap
    ub[IMP0:IMP0 + n] = np.where(site.outage, 0.0, site.import_limit)
    ub[EXP0:EXP0 + n] = np.where(site.outage, 0.0,
                                 np.where(site.event_limit, site.event_export_limit, site.export_limit))
    crit = site.critical_fraction * site.building
    ub[SIG0:SIG0 + len(after_t)] = site.building[after_t]
    ub[Z0:Z0 + Z] = 1.0

    cost[IMP0:IMP0 + n] = T["energy_price_per_kwh"] * h
    cost[EXP0:EXP0 + n] = -T["export_credit_per_kwh"] * h
    cost[P0:P0 + M] = T["demand_charge_per_kw_month"]
    cost[S0:S0 + len(departing)] = T["departure_shortfall_penalty_per_kwh"]
    cost[U0:U0 + len(outage_t)] = T["unserved_critical_penalty_per_kwh"] * h
    # DR payment: rate * (1/E) sum_events (1/len) sum_{t in event} sum_s (d - c)/h.
    dr_weight = np.zeros(n)
    for _, a, b in site.events:
        dr_weight[a:b] += T["dr_payment_per_kw"] / (len(site.events) * (b - a) * h)
    cost[C0:C0 + K] += dr_weight[t_of]
    cost[D0:D0 + K] -= dr_weight[t_of]

    rows, cols, vals = [], [], []

    def add(r, c, v):
        rows.append(np.asarray(r, np.int64))
        cols.append(np.asarray(c, np.int64))
        vals.append(np.broadcast_to(np.asarray(v, float), np.shape(r)).copy())

    # --- Equalities ------------------------------------------------------------------
    # Battery: e[k] - eff c[k] + d[k]/eff - e[k-1] = arrive_kwh (first interval) or 0.
    k = np.arange(K)
    first = np.zeros(K, bool)
    first[offs[:-1][lengths > 0]] = True
    add(k, E0 + k, 1.0)
    add(k, C0 + k, -eff)
    add(k, D0 + k, 1.0 / eff)
    nf = np.nonzero(~first)[0]
    add(nf, E0 + nf - 1, -1.0)
    b_eq = np.zeros(K)
    b_eq[first] = np.array([s["arrive_kwh"] for s in P])[lengths > 0] if P else []
    # Grid balance, grid-connected intervals: imp - exp - sum(c - d)/h [- served] = building [0].
    grid_row = np.full(n, -1, np.int64)
    grid_row[normal_t] = K + np.arange(len(normal_t))
    add(grid_row[normal_t], IMP0 + normal_t, 1.0)
    add(grid_row[normal_t], EXP0 + normal_t, -1.0)
    kn = np.nonzero(~out_k)[0]
    add(grid_row[t_of[kn]], C0 + kn, -1.0 / h)
    add(grid_row[t_of[kn]], D0 + kn, 1.0 / h)
    add(grid_row[after_t], SIG0 + np.arange(len(after_t)), -1.0)
    rhs_grid = site.building[normal_t].copy()
    rhs_grid[site.after[normal_t]] = 0.0
    b_eq = np.concatenate([b_eq, rhs_grid])
    n_eq = K + len(normal_t)
    A_eq = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(n_eq, nvar))

    # --- Inequalities ----------------------------------------------------------------
    rows, cols, vals = [], [], []
    b_ub = []
    r0 = 0
    # Monthly peak: imp - exp - P[month] <= 0.
    rr = r0 + np.arange(len(normal_t))
    add(rr, IMP0 + normal_t, 1.0)
    add(rr, EXP0 + normal_t, -1.0)
    add(rr, P0 + site.month[normal_t], -1.0)
    b_ub.append(np.zeros(len(normal_t)))
    r0 += len(normal_t)
    # Outages: served = sum d/h <= critical; -u - sum d/h <= -critical.
    ko = np.nonzero(out_k)[0]
    o_index = np.full(n, -1, np.int64)
    o_index[outage_t] = np.arange(len(outage_t))
    no = len(outage_t)
    add(r0 + o_index[t_of[ko]], D0 + ko, 1.0 / h)
    b_ub.append(crit[outage_t])
    r0 += no
    add(r0 + np.arange(no), U0 + np.arange(no), -1.0)
    add(r0 + o_index[t_of[ko]], D0 + ko, -1.0 / h)
    b_ub.append(-crit[outage_t])
    r0 += no
    # Departures: -e[last] - short <= -need.
    if departing:
        dep = np.array(departing)
        last = offs[dep + 1] - 1
        nd = len(dep)
        add(r0 + np.arange(nd), E0 + last, -1.0)
        add(r0 + np.arange(nd), S0 + np.arange(nd), -1.0)
        b_ub.append(-np.array([P[i]["need"] for i in departing]))
        r0 += nd
    # Reserve after an outage: d - dmax*z <= 0, -e + floor*z <= 0, z[k-1] - z[k] <= 0.
    if Z:
        add(r0 + np.arange(Z), D0 + zk, 1.0)
        add(r0 + np.arange(Z), Z0 + np.arange(Z), -dmax[zk])
        r0 += Z
        add(r0 + np.arange(Z), E0 + zk, -1.0)
        add(r0 + np.arange(Z), Z0 + np.arange(Z), floor[zk])
        r0 += Z
        b_ub.append(np.zeros(2 * Z))
        chained = np.nonzero(np.diff(zk) == 1)[0] + 1   # zk[j-1] = zk[j] - 1, same session
        chained = chained[~first[zk[chained]]]
        add(r0 + np.arange(len(chained)), Z0 + chained - 1, 1.0)
        add(r0 + np.arange(len(chained)), Z0 + chained, -1.0)
        b_ub.append(np.zeros(len(chained)))
        r0 += len(chained)
    n_ub = r0
    A_ub = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(n_ub, nvar))
    b_ub = np.concatenate(b_ub)

    started = time.perf_counter()
    if Z and integer:
        integrality = np.zeros(nvar, np.uint8)
        integrality[Z0:Z0 + Z] = 1
        A = sparse.vstack([A_eq, A_ub], format="csr")
        lo = np.concatenate([b_eq, np.full(n_ub, -np.inf)])
        hi = np.concatenate([b_eq, b_ub])
        res = milp(cost, integrality=integrality, bounds=Bounds(lb, ub),
                   constraints=LinearConstraint(A, lo, hi),
                   options=dict(presolve=True, mip_rel_gap=1e-7, time_limit=time_limit))
        bound = getattr(res, "mip_dual_bound", None)
    else:
        res = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=np.column_stack([lb, ub]),
                      method="highs", options=dict(presolve=True))
        bound = res.fun if res.status == 0 else None
    seconds = time.perf_counter() - started
    if res.x is None or res.status not in (0, 1):
        raise RuntimeError(f"HiGHS did not solve the LP: status {res.status}: {res.message}")
    x = res.x

    c, d, e = x[C0:C0 + K], x[D0:D0 + K], x[E0:E0 + K]
    ev = np.bincount(t_of, weights=(c - d) / h, minlength=n)
    served = site.building.copy()
    served[after_t] = x[SIG0:SIG0 + len(after_t)]
    served[outage_t] = np.bincount(t_of[ko], weights=d[ko] / h, minlength=n)[outage_t]
    grid = np.where(site.outage, 0.0, served + ev)
    grid = np.where(np.abs(grid) < 1e-9, 0.0, grid)
    short = x[S0:S0 + len(departing)]
    comps = site.costs(served, ev, grid, float(short.sum()))
    comps["lp_objective"] = float(res.fun)
    comps["lower_bound"] = float(bound) if bound is not None else None
    comps["unserved_critical_kwh_lp"] = float(x[U0:U0 + no].sum() * h)
    return dict(cost=comps, seconds=seconds, variables=nvar, constraints=n_eq + n_ub,
                nonzeros=int(A_eq.nnz + A_ub.nnz), integers=int(Z) if integer else 0,
                status=int(res.status), message=res.message,
                profile=dict(ev_kw=ev, served_kw=served, grid_kw=grid,
                             session=sess_of, interval=t_of, charge_kwh=c, discharge_kwh=d, energy_kwh=e))


# ---------------------------------------------------------------------------------------
# The unmanaged reference

def charge_on_arrival(site, s):
    """Charge-on-arrival through one session: (interval, kWh drawn, battery kWh at its end)
    per plugged interval. Full power from arrival until the need (never above the battery)
    is in; nothing in an outage."""
    ch = s["charger_spec"]
    eta = float(ch["efficiency"])
    full = float(ch["max_charge_kw"]) * site.h
    target = min(s["need"], float(s["vehicle_spec"]["battery_kwh"]))
    e = s["arrive_kwh"]
    for t in range(s["t0"], s["t1"]):
        x = 0.0
        if not site.outage[t] and e < target:
            x = min(full, (target - e) / eta)
            e += x * eta
        yield t, x, e


def unmanaged(site):
    n, h = site.n, site.h
    ev = np.zeros(n)
    shortfall = 0.0
    for s in site.plugged:
        e = s["arrive_kwh"]
        for t, x, e in charge_on_arrival(site, s):
            ev[t] += x / h
        if s["departs"]:
            shortfall += max(0.0, s["need"] - e)
    served = np.where(site.outage, 0.0, site.building)
    grid = np.where(site.outage, 0.0, served + ev)
    return site.costs(served, ev, grid, shortfall)


# ---------------------------------------------------------------------------------------
# A simulator trace

def check_horizon(site, trace_dir):
    """check_trace.check() on the trace, over the horizon: with --months, on a copy of the
    scenario cut to the horizon and the trace's rows inside it."""
    for f in ("intervals.csv", "vehicles.csv"):
        if not os.path.isfile(os.path.join(trace_dir, f)):
            raise InputError(f"cannot read trace {trace_dir}: no {f}")
    if site.full:
        try:
            with open(os.path.join(trace_dir, "intervals.csv")) as f:
                rows = sum(1 for line in f if line.strip()) - 1
            if rows < site.n:
                raise InputError(f"trace {trace_dir} has {rows} intervals, the scenario {site.n}; "
                                 f"score a shorter trace with --months")
            return check_trace.check(site.dir, trace_dir)
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"cannot read trace {trace_dir}: {e}")
    tmp = tempfile.mkdtemp(prefix="optimum-")
    try:
        scen, trace = os.path.join(tmp, "scenario"), os.path.join(tmp, "trace")
        os.makedirs(scen)
        os.makedirs(trace)
        sc = dict(site.sc, duration_minutes=site.end_minute)
        with open(os.path.join(scen, "scenario.json"), "w") as f:
            json.dump(sc, f)
        for key in ("load_csv", "sessions_csv"):
            shutil.copy(os.path.join(site.dir, site.sc[key]), os.path.join(scen, site.sc[key]))
        rows_seen = 0
        for name in ("intervals.csv", "vehicles.csv"):
            with open(os.path.join(trace_dir, name)) as src, open(os.path.join(trace, name), "w") as dst:
                header = src.readline()
                dst.write(header)
                for line in src:
                    m = line.split(",", 1)[0]
                    if m.strip() and int(m) < site.end_minute:
                        dst.write(line)
                        if name == "intervals.csv":
                            rows_seen += 1
        if rows_seen < site.n:
            raise InputError(f"trace {trace_dir} has {rows_seen} intervals inside the horizon, "
                             f"which has {site.n}")
        return check_trace.check(scen, trace)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"cannot read trace {trace_dir}: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


COMPONENTS = [  # (key, label): the signed terms of the total
    ("demand_charge", "demand charge"),
    ("energy_net", "energy (net of export credit)"),
    ("dr", "demand response (-payment)"),
    ("shortfall_penalty", "departure shortfall"),
    ("unserved_critical_penalty", "unserved critical load"),
]


def summary(c):
    """The cost components as signed terms of the total."""
    return dict(total=c["total"], demand_charge=c["demand_charge"],
                energy_net=c["energy_cost"] - c["export_credit"], dr=-c["dr_payment"],
                shortfall_penalty=c["shortfall_penalty"],
                unserved_critical_penalty=c["unserved_critical_penalty"])


def money(x):
    if x != x:
        return "n/a"
    r = round(x)
    return f"-${-r:,}" if r < 0 else f"${r:,}"


def plain(c):
    out = {}
    for k, v in c.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        out[k] = v
    return out


def main(argv):
    args, opts = [], {}
    it = iter(argv[1:])
    try:
        for a in it:
            if a == "--json":
                opts["json"] = True
            elif a == "--trace":
                opts["trace"] = next(it)
            elif a == "--ride-through-hours":
                opts["ride"] = float(next(it))
                if not 0 <= opts["ride"] <= 48:
                    raise ValueError
            elif a == "--months":
                opts["months"] = int(next(it))
                if opts["months"] <= 0:
                    raise ValueError
            elif a.startswith("--"):
                raise ValueError
            else:
                args.append(a)
    except (StopIteration, ValueError):
        args = []
    if len(args) != 1:
        print("usage: optimum.py SCENARIO_DIR [--trace TRACE_DIR] [--json] [--months N] [--ride-through-hours H]",
              file=sys.stderr)
        return 2
    try:
        site = Site(args[0], opts.get("months"))
        tr = None
        if "trace" in opts:   # first: a bad trace should not wait for the solve
            violations, tcost = check_horizon(site, opts["trace"])
            tr = dict(cost=tcost, violations=violations)
        unm = unmanaged(site)
        opt = solve_optimum(site, ride_through_hours=opts.get("ride", 0.0))
    except InputError as e:
        print(f"optimum.py: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"optimum.py: {e}", file=sys.stderr)
        return 1

    o, u = summary(opt["cost"]), summary(unm)
    span = u["total"] - o["total"]
    result = dict(
        scenario=site.name,
        ride_through_hours=opts.get("ride", 0.0),
        horizon=dict(intervals=site.n, end_minute=site.end_minute, months=site.month_labels),
        optimal=dict(o, lp_objective=opt["cost"]["lp_objective"], lower_bound=opt["cost"]["lower_bound"],
                     proven_optimal=opt["status"] == 0,
                     monthly_peaks_kw=opt["cost"]["monthly_peaks_kw"],
                     mean_event_discharge_kw=opt["cost"]["mean_event_discharge_kw"],
                     shortfall_kwh=opt["cost"]["shortfall_kwh"],
                     unserved_critical_kwh=opt["cost"]["unserved_critical_kwh"]),
        unmanaged=dict(u, monthly_peaks_kw=unm["monthly_peaks_kw"], shortfall_kwh=unm["shortfall_kwh"],
                       unserved_critical_kwh=unm["unserved_critical_kwh"]),
        trace=None, score=None,
        solve_seconds=round(opt["seconds"], 2),
        lp_size=dict(variables=opt["variables"], constraints=opt["constraints"], nonzeros=opt["nonzeros"],
                     binaries=opt["integers"]),
    )
    if tr is not None:
        t = summary(tr["cost"])
        gap = {key: t[key] - o[key] for key, _ in COMPONENTS}
        result["trace"] = dict(t, violations=len(tr["violations"]), violation_examples=tr["violations"][:5],
                               monthly_peaks_kw=tr["cost"]["monthly_peaks_kw"],
                               shortfall_kwh=tr["cost"]["shortfall_kwh"],
                               unserved_critical_kwh=tr["cost"]["unserved_critical_kwh"],
                               gap_to_optimal=dict(gap, total=t["total"] - o["total"]))
        result["score"] = (u["total"] - t["total"]) / span if span > 1e-9 else None

    if opts.get("json"):
        print(json.dumps(plain(result), indent=1, default=float))
        return 0

    months = site.month_labels
    print(f"{site.name}: {site.n} intervals, {months[0]}..{months[-1]}"
          + ("" if site.full else " (first months only)")
          + (f"; optimum under the {opts['ride']:g} h ride-through rule" if opts.get("ride") else ""))
    kind = f"MILP ({opt['integers']:,} binaries for the reserve after outages)" if opt["integers"] else "LP"
    print(f"  {kind}: {opt['variables']:,} variables, {opt['constraints']:,} constraints, "
          f"{opt['nonzeros']:,} nonzeros; HiGHS {opt['seconds']:.1f} s")
    if opt["status"] != 0:
        print(f"  NOT PROVEN OPTIMAL ({opt['message']}): best found {money(o['total'])}, "
              f"lower bound {money(opt['cost']['lower_bound'] or float('nan'))}")
    cols = [("optimal", o), ("unmanaged", u)] + ([("trace", result["trace"])] if tr else [])
    print(f"  {'':32}" + "".join(f"{name:>14}" for name, _ in cols)
          + (f"{'trace-optimal':>15}" if tr else ""))
    for key, label in COMPONENTS + [("total", "total")]:
        line = f"  {label:32}" + "".join(f"{money(v[key]):>14}" for _, v in cols)
        if tr:
            line += f"{money(result['trace']['gap_to_optimal'][key]):>15}"
        print(line)
    if tr:
        g = result["trace"]["gap_to_optimal"]
        total_gap = g["total"]
        print(f"  trace: {len(tr['violations'])} violations (check_trace.py)")
        for v in tr["violations"][:5]:
            print("    " + v)
        score = result["score"]
        print(f"  score (unmanaged - trace) / (unmanaged - optimal) = "
              f"{'n/a' if score is None else f'{score:.3f}'}")
        if abs(total_gap) > 1e-6:
            parts = ", ".join(f"{label} {100 * g[key] / total_gap:.0f}%" for key, label in COMPONENTS
                              if abs(100 * g[key] / total_gap) >= 0.5)
            print(f"  gap to the optimum, {money(total_gap)}: {parts}")
    print("  (the optimum knows the future: a lower bound, not a target a causal controller can reach)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
