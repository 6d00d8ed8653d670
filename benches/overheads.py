#!/usr/bin/env python3
"""Prints the instruction overheads of benches/instructions.rs over its baselines.

    cargo bench --bench instructions 2>&1 | tee /tmp/instructions.txt
    python3 benches/overheads.py /tmp/instructions.txt

Reads gungraun's terminal output (a bench's header line, then its `Instructions:` line)
from the file given, or from standard input.
"""

import re
import sys

HEADER = re.compile(r"^instructions::(\w+)::(\w+) (\w+):")
# The layer benches send this many requests in a row (`REQUESTS` in instructions.rs).
REQUESTS = 16
INSTRUCTIONS = re.compile(r"^\s+Instructions:\s+([\d,]+)")

# (bench, the baseline it is compared with, what the difference means)
OVERHEADS = [
    ("noop_layer", "bare_router", "a do-nothing layer with Router::layer, over the bare router"),
    ("validate_layer", "bare_router", "tower-http bearer check with Router::layer, over the bare router"),
    ("validate_around", "bare_router", "tower-http bearer check around the router, over the bare router"),
    ("stateful_layer", "noop_layer", "a do-nothing layer holding an Arc, over one holding nothing, with Router::layer"),
    ("allowlist_layer", "noop_layer", "allowlist with Router::layer, over the do-nothing layer"),
    ("allowlist_layer", "stateful_layer", "allowlist with Router::layer, over the do-nothing layer holding an Arc"),
    ("validate_layer", "validate_around", "what Router::layer adds to the bearer check, over the check around the router"),
    ("allowlist_layer", "allowlist_around", "what Router::layer adds to the allowlist, over the allowlist around the router"),
    ("allowlist_layer", "bare_router", "allowlist with Router::layer, over the bare router"),
    ("allowlist_around", "bare_router", "allowlist around the router, over the bare router"),
    ("allowlist_layer_denied", "allowlist_layer", "a refusal with Router::layer, over an allowed request"),
    ("allowlist_around_denied", "allowlist_around", "a refusal around the router, over an allowed request"),
    # As `axum::serve` runs a router: handlers turned into routes once (`with_state(())`).
    ("noop_layer_served", "bare_served", "served: a do-nothing layer with Router::layer, over the bare router"),
    ("stateful_layer_served", "noop_layer_served", "served: a do-nothing layer holding an Arc, over one holding nothing"),
    ("validate_layer_served", "bare_served", "served: tower-http bearer check with Router::layer, over the bare router"),
    ("validate_around_served", "bare_served", "served: tower-http bearer check around the router, over the bare router"),
    ("allowlist_layer_served", "noop_layer_served", "served: allowlist with Router::layer, over the do-nothing layer"),
    ("allowlist_layer_served", "stateful_layer_served", "served: allowlist with Router::layer, over the do-nothing layer holding an Arc"),
    ("validate_layer_served", "validate_around_served", "served: what Router::layer adds to the bearer check, over the check around the router"),
    ("allowlist_layer_served", "allowlist_around_served", "served: what Router::layer adds to the allowlist, over the allowlist around the router"),
    ("allowlist_layer_served", "bare_served", "served: allowlist with Router::layer, over the bare router"),
    ("allowlist_around_served", "bare_served", "served: allowlist around the router, over the bare router"),
]


def read(lines):
    counts = {}
    bench = None
    for line in lines:
        header = HEADER.match(line)
        if header:
            group, bench = header.group(1), header.group(3)
            continue
        instructions = INSTRUCTIONS.match(line)
        if instructions and bench is not None:
            count = int(instructions.group(1).replace(",", ""))
            counts[bench] = round(count / REQUESTS) if group == "layer" else count
            bench = None
    return counts


def main():
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    counts = read(source)
    if not counts:
        sys.exit("no gungraun results found: pipe in the output of `cargo bench --bench instructions`")
    print("instructions per request (layer benches: the mean of %d requests):" % REQUESTS)
    for bench, count in counts.items():
        print(f"  {bench:28} {count:8,}")
    print("overheads:")
    for bench, baseline, meaning in OVERHEADS:
        if bench in counts and baseline in counts:
            print(f"  {counts[bench] - counts[baseline]:+8,}  {meaning}")


if __name__ == "__main__":
    main()
