#!/usr/bin/env python3
"""detect_labels.py - score asr's generic detectors against a labelled log (BGL_2k); run by
bench/detect_labels.sh, which produces the three inputs.

    detect_labels.py LABELLED_LOG LINES_TSV INCIDENTS_JSONL [STRUCTURED_CSV]

LABELLED_LOG      the original log: first field is the label ('-' = not an alert, else the
                  alert category, e.g. KERNDTLB); the 9th field is the severity (BGL's Level).
LINES_TSV         bench/sigscan_lines over the same lines with the label stripped:
                  LINENO<TAB>KIND<TAB>TEMPLATE_ID (KIND '-' when no generic detector matched).
INCIDENTS_JSONL   `asr detect -c CONFIG --service bgl UNLABELLED` (no signatures, generic on).
STRUCTURED_CSV    optional: the Loghub ground truth (LineId, ..., EventId); adds a reference row,
                  one incident per true template among the flagged lines (what the incidents
                  would be if asr's miner found exactly the true templates).

Prints markdown: line-level confusion matrices of the generic detectors and of the naive
severity baseline, the incident-level score (definitions in bench/detection_labels.md), and a
per-category table. Consistency between the two asr outputs is checked, not assumed: every
incident must be a generic one whose fingerprint names a template that sigscan_lines saw
flagged, whose first line is that template's first flagged line, and whose count is the number
of flagged lines of that template. Exits 1 if a check fails.
"""
import collections
import csv
import itertools
import json
import sys

NAIVE_LEVELS = {"FATAL", "ERROR", "SEVERE", "FAILURE"}
SEVERITY_FIELD = 8  # 0-based field index of BGL's Level in the labelled line


def die(msg):
    print(f"detect_labels.py: {msg}", file=sys.stderr)
    sys.exit(1)


def ratio(a, b):
    return f"{a / b:.3f}" if b else "n/a"


def confusion(flags, alerts):
    tp = sum(1 for f, a in zip(flags, alerts) if f and a)
    fp = sum(1 for f, a in zip(flags, alerts) if f and not a)
    fn = sum(1 for f, a in zip(flags, alerts) if not f and a)
    tn = len(flags) - tp - fp - fn
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return tp, fp, fn, tn, p, r, f1


def runs(values):
    """Maximal runs of consecutive line indexes with a true value: list of (start, end) inclusive."""
    out, i = [], 0
    for k, g in itertools.groupby(values):
        n = len(list(g))
        if k:
            out.append((i, i + n - 1))
        i += n
    return out


def main():
    if len(sys.argv) not in (4, 5):
        die("usage: detect_labels.py LABELLED_LOG LINES_TSV INCIDENTS_JSONL [STRUCTURED_CSV]")
    with open(sys.argv[1], encoding="utf-8", newline="") as f:
        raw = f.read().split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    labels, texts, levels = [], [], []
    for n, line in enumerate(raw, 1):
        parts = line.split(" ", 1)
        if len(parts) != 2:
            die(f"{sys.argv[1]}:{n}: no label field")
        labels.append(parts[0])
        texts.append(parts[1])
        fields = line.split()
        levels.append(fields[SEVERITY_FIELD] if len(fields) > SEVERITY_FIELD else "")
    N = len(labels)
    alerts = [l != "-" for l in labels]

    kinds, tmpl = [None] * N, [None] * N
    with open(sys.argv[2], encoding="utf-8") as f:
        for row in f:
            no, kind, tid = row.rstrip("\n").split("\t")
            i = int(no) - 1
            if not 0 <= i < N:
                die(f"{sys.argv[2]}: line number {no} outside 1..{N}")
            kinds[i] = None if kind == "-" else kind
            tmpl[i] = int(tid)
    if any(t is None for t in tmpl):
        die(f"{sys.argv[2]}: not every line of the log was scanned")
    flagged = [k is not None for k in kinds]
    naive = [lv in NAIVE_LEVELS for lv in levels]

    incidents = []
    with open(sys.argv[3], encoding="utf-8") as f:
        for row in f:
            if row.strip():
                incidents.append(json.loads(row))

    # Every flagged line of template K is counted by the incident with fingerprint ...:template:K
    # (asr detect never resolves, so one fingerprint is one incident). Check it against asr.
    by_tmpl = collections.defaultdict(list)
    for i in range(N):
        if flagged[i]:
            by_tmpl[tmpl[i]].append(i)
    inc_rows = []
    for inc in incidents:
        if inc.get("kind") != "generic":
            die(f"incident {inc.get('id')}: kind {inc.get('kind')!r}, expected generic only")
        tid = int(inc["fingerprint"].rsplit(":", 1)[1])
        lines = by_tmpl.get(tid)
        if not lines:
            die(f"incident {inc['id']}: template {tid} has no flagged line in sigscan_lines")
        first = lines[0]
        if texts[first] != inc["line"]:
            die(f"incident {inc['id']}: first line is not line {first + 1}: {inc['line']!r}")
        if inc["count"] != len(lines):
            die(f"incident {inc['id']}: count {inc['count']}, sigscan_lines has {len(lines)}")
        nb, na = len(inc.get("context_before") or []), len(inc.get("context_after") or [])
        if texts[first - nb:first] != (inc.get("context_before") or []) or \
                texts[first + 1:first + 1 + na] != (inc.get("context_after") or []):
            die(f"incident {inc['id']}: context is not the lines around line {first + 1}")
        inc_rows.append({"first": first, "lines": lines, "ctx": (first - nb, first + na),
                         "kind": inc["signature"]})
    if len(inc_rows) != len(by_tmpl):
        die(f"{len(by_tmpl)} flagged templates but {len(inc_rows)} incidents")

    alert_runs = runs(alerts)
    run_of = {}
    for r, (a, b) in enumerate(alert_runs):
        for i in range(a, b + 1):
            run_of[i] = r
    cats = collections.Counter(l for l in labels if l != "-")

    def incident_score(rows):
        """rows: [{'first': i, 'lines': [...], 'ctx': (a, b)}]"""
        tp = sum(1 for x in rows if alerts[x["first"]])
        counted = set(i for x in rows for i in x["lines"])
        in_ctx = set(i for x in rows for i in range(x["ctx"][0], x["ctx"][1] + 1)) | counted
        pure_alert = sum(1 for x in rows if all(alerts[i] for i in x["lines"]))
        pure_normal = sum(1 for x in rows if not any(alerts[i] for i in x["lines"]))
        opened_cats = set(labels[x["first"]] for x in rows if alerts[x["first"]])
        counted_cats = set(labels[i] for i in counted if alerts[i])
        opened_runs = set(run_of[x["first"]] for x in rows if x["first"] in run_of)
        counted_runs = set(run_of[i] for i in counted if i in run_of)
        return {
            "n": len(rows), "tp": tp, "fp": len(rows) - tp,
            "mixed": len(rows) - pure_alert - pure_normal,
            "cat_fn": len(cats) - len(counted_cats), "cat_counted": len(counted_cats),
            "cat_opened": len(opened_cats),
            "runs_opened": len(opened_runs), "runs_counted": len(counted_runs),
            "alert_counted": sum(1 for i in counted if alerts[i]),
            "alert_in_ctx": sum(1 for i in in_ctx if alerts[i]),
            "opened_cats": opened_cats, "counted_cats": counted_cats,
        }

    asr = incident_score(inc_rows)
    # Naive incidents, for scale: a page for every flagged line, and a page per burst (maximal
    # run of consecutive flagged lines; its lines are the run; no context).
    naive_line = incident_score([{"first": i, "lines": [i], "ctx": (i, i)}
                                 for i in range(N) if naive[i]])
    naive_burst = incident_score([{"first": a, "lines": list(range(a, b + 1)), "ctx": (a, b)}
                                  for a, b in runs(naive)])

    # asr groups an incident under the first incident of its group when it opens within
    # group_window_ms (30 s) of the previous one while that first one is open (they all stay
    # open here). `asr detect` stamps file lines with the time it reads them, so in a replay
    # every incident lands in one group (parent_ids are checked below); this row applies the
    # same rule to the log's own timestamps (BGL's second field, in seconds), which is what
    # the daemon would have done reading the log live.
    parents = collections.Counter(inc.get("parent_id") for inc in incidents)
    stamps = [int(line.split()[1]) for line in raw]
    groups = []
    last = None
    for x in sorted(inc_rows, key=lambda r: r["first"]):
        t = stamps[x["first"]]
        if groups and last is not None and t - last <= 30:
            g = groups[-1]
            g["lines"] = sorted(set(g["lines"]) | set(x["lines"]))
            g["ctx"] = (min(g["ctx"][0], x["ctx"][0]), max(g["ctx"][1], x["ctx"][1]))
            g["members"].append(x)
        else:
            groups.append({"first": x["first"], "lines": list(x["lines"]), "ctx": x["ctx"],
                           "members": [x]})
        last = t
    asr_groups = incident_score(groups)

    true_rows = None
    if len(sys.argv) == 5:
        with open(sys.argv[4], encoding="utf-8", newline="") as f:
            event = {int(r["LineId"]) - 1: r["EventId"] for r in csv.DictReader(f)}
        if sorted(event) != list(range(N)):
            die(f"{sys.argv[4]}: LineIds are not 1..{N}")
        by_true = collections.OrderedDict()
        for i in range(N):
            if flagged[i]:
                by_true.setdefault(event[i], []).append(i)
        true_rows = incident_score([{"first": v[0], "lines": v,
                                     "ctx": (max(0, v[0] - 20), min(N - 1, v[0] + 20))}
                                    for v in by_true.values()])

    total_alerts = sum(alerts)
    print(f"Input: {N} lines, {total_alerts} alert lines in {len(cats)} categories, "
          f"{len(alert_runs)} runs of consecutive alert lines.\n")
    print("### Line level\n")
    print("| detector | flagged | TP | FP | FN | TN | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, fl in (("asr generic detectors", flagged),
                     ("naive: severity FATAL/ERROR/SEVERE/FAILURE", naive)):
        tp, fp, fn, tn, p, r, f1 = confusion(fl, alerts)
        print(f"| {name} | {tp + fp} | {tp} | {fp} | {fn} | {tn} | {p:.3f} | {r:.3f} | {f1:.3f} |")
    same = sum(1 for a, b in zip(flagged, naive) if a == b)
    print(f"\nLines on which the two agree: {same} of {N}.")
    kc = collections.Counter(k for k in kinds if k)
    print("Generic hits by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kc.items())) +
          "; FP lines by severity field: " +
          ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(
              levels[i] for i in range(N) if flagged[i] and not alerts[i]).items())) + ".\n")

    print("### Incident level\n")
    print("| alerter | incidents | TP (first line is an alert) | FP | precision | mixed incidents "
          "| categories found (FN) | categories that opened an incident | alert runs that "
          "opened an incident | alert runs counted | alert lines counted | alert lines counted "
          "or in context |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in (("asr detect (generic)", asr),
                    ("asr detect, groups (30 s window on log time, simulated)", asr_groups),
                    *((("reference: one incident per true template of the flagged lines",
                        true_rows),) if true_rows else ()),
                    ("naive, one incident per flagged line", naive_line),
                    ("naive, one incident per burst of flagged lines", naive_burst)):
        print(f"| {name} | {s['n']} | {s['tp']} | {s['fp']} | {ratio(s['tp'], s['n'])} | "
              f"{s['mixed']} | {s['cat_counted']}/{len(cats)} ({s['cat_fn']}) | "
              f"{s['cat_opened']}/{len(cats)} | {s['runs_opened']}/{len(alert_runs)} | "
              f"{s['runs_counted']}/{len(alert_runs)} | {s['alert_counted']}/{total_alerts} | "
              f"{s['alert_in_ctx']}/{total_alerts} |")
    ik = collections.Counter(x["kind"] for x in inc_rows)
    print("\nasr incidents by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(ik.items())) +
          f"; distinct asr templates among flagged lines: {len(by_tmpl)}; parent_id in the "
          f"replay: " + ", ".join(f"{k} x{v}" for k, v in parents.most_common()) +
          f"; groups on log time: {len(groups)}.\n")

    print("### Per alert category (asr detect)\n")
    print("| category | lines | lines flagged | runs | incidents opened on it | runs that opened "
          "an incident |")
    print("|---|---|---|---|---|---|")
    for cat, n in cats.most_common():
        idx = [i for i in range(N) if labels[i] == cat]
        cat_runs = set(run_of[i] for i in idx)
        opened = [x for x in inc_rows if labels[x["first"]] == cat]
        opened_runs = set(run_of[x["first"]] for x in opened)
        print(f"| {cat} | {n} | {sum(1 for i in idx if flagged[i])} | {len(cat_runs)} | "
              f"{len(opened)} | {len(opened_runs)} |")

    # What the false-positive incidents opened on, grouped by the line's text after the header,
    # so a reader can judge whether a detector fired on something that is not an error at all.
    print("\n### False-positive incidents by message (asr detect)\n")
    print("| incidents | kind | severity field | message (first FP incident's line, after the "
          "header) |")
    print("|---|---|---|---|")
    groups = collections.OrderedDict()
    for x in sorted(inc_rows, key=lambda r: r["first"]):
        if alerts[x["first"]]:
            continue
        msg = " ".join(raw[x["first"]].split()[SEVERITY_FIELD + 1:])
        key = (x["kind"], levels[x["first"]], " ".join(msg.split()[:4]))
        groups.setdefault(key, []).append(msg)
    for (kind, lv, _), msgs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        m = msgs[0] if len(msgs[0]) <= 90 else msgs[0][:87] + "..."
        print(f"| {len(msgs)} | {kind} | {lv} | `{m}` |")


if __name__ == "__main__":
    main()
