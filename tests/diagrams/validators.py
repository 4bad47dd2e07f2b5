r"""Check diagrams with the real tools: Mermaid's own parser (under Node) and Graphviz's `dot`.

`scripts/diagram-tools.sh` installs both (`make test` runs it): npm `mermaid` and `jsdom` into
`.cache/mermaid/node_modules`, and `dot` from apt. When a tool is missing a test skips with the
install hint, except under `CI=true`, where it fails: CI must never pass by skipping.

What Mermaid 11.17.2 makes of text inside a quoted label `a["x?y"]`; the same holds in
`(["..."])`, `(("..."))`, `-- "..." -->`, `-->|"..."|` and `subgraph s ["..."]`, and
test_validators.py pins every row, so an upgrade that changes one is noticed.

    text in the quotes                 parses  the label becomes
    ---------------------------------  ------  ------------------------------------------
    "                                  no (*)  write #quot;
    \"                                 no      backslash is no escape in Mermaid
    (empty label) [""]                 no      write [" "]
    ( ) [ ] { } > # ; | % : , @ \      yes     as written
    × → ² ᵀ ⁻¹ (any non-ASCII)         yes     as written
    --> end %% (inside the quotes)     yes     as written
    <letter  (x<y, <script>)           yes     CUT: x<y becomes x (DOMPurify sees a tag)
    < before a digit or space (x<2)    yes     kept
    <br>, <b>..</b>                    yes     HTML: a line break, bold
    &                                  yes     HTML: &lt; in the text shows as <
    #name; or #123; (#quot; #40; #lt;) yes     an HTML entity, &quot; &#40; &lt; in the SVG
    `...` (backticks round it all)     yes     a Markdown string
    leading and trailing spaces        yes     trimmed

(*) A stray quote usually breaks the parse, but not always: a["say "hi""] parses, as the
label `say hi`. Mermaid rewrites every #\w+; before parsing, so a literal # followed by a
word and ; needs #35;. Escaping # first (#35;), then & " < > ` (#amp; #quot; #lt; #gt; #96;)
makes any one-line text parse and read back as written (read back checked by hand against
the parsed flowchart; test_validators.py checks that a list of awkward labels parses).
"""

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".cache" / "mermaid" / "node_modules"
CHECKER = Path(__file__).with_name("mermaid_check.mjs")
MIN_NODE = (20, 19)  # jsdom 29 needs Node 20.19 or newer
INSTALL_HINT = "run `bash scripts/diagram-tools.sh` (needs Node.js 20.19+ with npm, and apt)"


def _missing(what: str) -> NoReturn:
    """Skip the calling test because `what` is not installed; under CI=true fail instead."""
    message = f"{what}; {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (scripts/diagram-tools.sh installs it in CI)")
    pytest.skip(message)


def _node() -> str:
    """Path of a Node new enough for jsdom, and the installed mermaid beside it."""
    node = shutil.which("node")
    if node is None:
        _missing("node is not on PATH, so Mermaid diagrams cannot be parsed")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    found = re.match(r"v(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < MIN_NODE:
        _missing(f"node {version or '?'} is older than v{MIN_NODE[0]}.{MIN_NODE[1]}")
    for package in ("mermaid", "jsdom"):
        if not (NODE_MODULES / package / "package.json").is_file():
            _missing(f"npm package {package} is not installed in {NODE_MODULES}")
    return node


def _offending_line(text: str, message: str) -> str:
    """The source line a 'line N' in `message` points at ('' when there is none)."""
    found = re.search(r"line (\d+)", message)
    if found is None:
        return ""
    lines = text.splitlines()
    # A parser may report one line past the end when the text ends too early.
    index = min(int(found[1]), len(lines)) - 1
    return lines[index].strip() if index >= 0 else ""


def mermaid_errors(diagrams: dict[str, str], timeout: float = 240.0) -> dict[str, str]:
    """Parse every diagram with Mermaid in one Node process; map each failing name to its error.

    Args:
        diagrams: name -> Mermaid text.
        timeout: seconds for the whole batch, under pytest's 300 s per test. Starting Node and
            importing mermaid take ~1.5 s, then each labelled node ~1 ms.

    Returns:
        name -> "Parse error on line N: <offending line> (unexpected 'TOKEN')" for the
        diagrams Mermaid rejects; valid diagrams are left out, so `{}` means all parse.
    """
    if not diagrams:
        return {}
    node = _node()
    try:
        done = subprocess.run(
            [node, str(CHECKER), str(NODE_MODULES)],
            input=json.dumps(diagrams),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"mermaid_check.mjs took over {timeout:.0f} s for {len(diagrams)} diagrams.")
    if done.returncode != 0:
        pytest.fail(f"mermaid_check.mjs exited with {done.returncode}:\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout)
    if set(results) != set(diagrams):
        pytest.fail(f"mermaid_check.mjs answered for {sorted(results)}, not {sorted(diagrams)}.")
    return {name: error for name, error in results.items() if error is not None}


def _dot_error(dot: str, text: str, timeout: float, allow_warnings: bool) -> str | None:
    """Render one DOT text to SVG; the error (or, unless allowed, warning) lines, else None."""
    try:
        done = subprocess.run(
            [dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"dot -Tsvg took over {timeout:.0f} s"
    prefixes = ("Error", "Warning") if not allow_warnings or done.returncode else ("Error",)
    problems = [line for line in done.stderr.splitlines() if line.startswith(prefixes)]
    if done.returncode != 0 and not problems:
        problems = [f"dot exited with {done.returncode}: {done.stderr.strip()[:300]}"]
    if not problems and "<svg" not in done.stdout:
        problems = ["dot drew nothing: the text holds no graph"]
    if not problems:
        return None
    line = _offending_line(text, problems[0])
    return "; ".join(problems) + (f": {line}" if line else "")


def dot_errors(
    diagrams: dict[str, str], timeout: float = 30.0, allow_warnings: bool = False
) -> dict[str, str]:
    """Render every diagram with Graphviz `dot -Tsvg`; map each failing name to its error.

    A warning (an unknown colour, an `lhead` naming a missing cluster) counts as a failure
    unless `allow_warnings`: a generated diagram has no reason to draw one.

    Args:
        diagrams: name -> DOT text.
        timeout: seconds for each diagram; dot runs in parallel, ~15 ms for a small graph.
        allow_warnings: report only errors, not "Warning: ..." lines.

    Returns:
        name -> "Error: <stdin>: syntax error in line N near 'X': <offending line>" for the
        diagrams dot rejects; valid diagrams are left out, so `{}` means all render.
    """
    if not diagrams:
        return {}
    dot = shutil.which("dot")
    if dot is None:
        _missing("Graphviz dot is not on PATH, so DOT diagrams cannot be checked")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        errors = pool.map(
            lambda text: _dot_error(dot, text, timeout, allow_warnings), diagrams.values()
        )
        results = dict(zip(diagrams, errors, strict=True))
    return {name: error for name, error in results.items() if error is not None}
