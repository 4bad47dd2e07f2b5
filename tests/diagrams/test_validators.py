"""The diagram validators can fail: real Mermaid and Graphviz reject broken text, accept good text.

Every Mermaid text here (~380) is parsed by one Node process in the module fixture, so they
cost one mermaid import, about 4 s in all. The label-character table pins what Mermaid 11.17.2
does with each character inside a quoted label (see validators.py); an upgrade that changes a
row fails here, and the escaping in the diagram emitter must follow.
"""

import pytest

from tests.diagrams import validators
from tests.diagrams.validators import dot_errors, mermaid_errors

# The shapes and syntax the emitter uses: subgraphs (nested, titled, with a direction), a
# stadium input, a circle for an add, both edge-label forms, classDef and class.
VALID_FLOWCHART = """\
%% resnet-like block, written by hand to look like the emitter's output
flowchart LR
  classDef param fill:#eef,stroke:#88a
  x(["x (B, 3, H, W)"])
  subgraph stem ["stem"]
    conv["Conv2d 3→64, 7×7, stride 2"]
    bn["BatchNorm2d"]
  end
  subgraph blocks ["blocks"]
    direction TB
    subgraph block0 ["blocks.0"]
      c1["Conv2d 64→64"] --> c2["Conv2d 64→64"]
    end
  end
  add(("+"))
  x --> conv --> bn
  bn -- "(B, 64, H/2, W/2)" --> c1
  c2 --> add
  bn -->|"skip"| add
  add --> y(["y (B, 1000)"])
  class conv,c1,c2 param
"""

# name -> (text, a fragment the error must contain)
INVALID_MERMAID = {
    "unclosed bracket": (
        'flowchart LR\n  a["Linear" --> b\n',
        'a["Linear" --> b (unexpected end of text)',
    ),
    "subgraph without end": (
        'flowchart LR\n  subgraph s ["stage"]\n    a --> b\n',
        "(unexpected end of text)",
    ),
    "unescaped quote": (
        'flowchart LR\n  a --> b\n  b["say "hi" there"] --> c\n',
        """line 3: b["say "hi" there"] --> c (unexpected 'STR')""",
    ),
    "keyword as node id": ("flowchart LR\n  end --> b\n", "line 2: end --> b"),
    "empty label": ('flowchart LR\n  a[""] --> b\n', 'line 2: a[""] --> b'),
    "backslash is no escape": ('flowchart LR\n  a["x\\"y"]\n', "line 2"),
    "no diagram type": ("a --> b\n", "No diagram type detected"),
}

# Parses, though the text is wrong: the parser cannot be trusted to catch these.
SLIPS_THROUGH = {
    "two stray quotes": 'flowchart LR\n  a["say "hi""] --> b\n',  # label becomes: say hi
    "tag-like text": 'flowchart LR\n  a["x<y"] --> b\n',  # label becomes: x
    "arrow without spaces": "flowchart LR\n  a---ob\n",  # a circle-ended edge from a to b
}

# id -> (text inside the quotes, parses): every row holds in all six label positions below.
LABEL_CHARACTERS = {
    "double quote": ('"', False),
    "backslash quote": ('\\"', False),
    "paren open": ("(", True),
    "paren close": (")", True),
    "bracket open": ("[", True),
    "bracket close": ("]", True),
    "brace open": ("{", True),
    "brace close": ("}", True),
    "less than": ("<", True),  # parses, but `x<y` is cut to `x` (see SLIPS_THROUGH)
    "greater than": (">", True),
    "hash": ("#", True),
    "semicolon": (";", True),
    "pipe": ("|", True),
    "times": ("×", True),
    "arrow": ("→", True),
    "superscript 2": ("²", True),
    "superscript T": ("ᵀ", True),
    "superscript -1": ("⁻¹", True),
    "ampersand": ("&", True),
    "backtick": ("`", True),
    "percent": ("%", True),
    "percent percent": ("%%", True),
    "colon": (":", True),
    "comma": (",", True),
    "at": ("@", True),
    "backslash": ("\\", True),
    "mermaid arrow": ("-->", True),
    "br tag": ("<br>", True),
    "keyword end": ("end", True),
    "entity quot": ("#quot;", True),
    "entity 40": ("#40;", True),
    "entity 41": ("#41;", True),
    "entity 91": ("#91;", True),
    "entity 93": ("#93;", True),
    "entity lt": ("#lt;", True),
    "entity gt": ("#gt;", True),
    "entity 35": ("#35;", True),
    "entity amp": ("#amp;", True),
    "entity 8594": ("#8594;", True),
}

LABEL_POSITIONS = {
    "square": 'flowchart LR\n  a["x{}y"] --> b\n',
    "stadium": 'flowchart LR\n  a(["x{}y"]) --> b\n',
    "circle": 'flowchart LR\n  a(("x{}y")) --> b\n',
    "edge dashes": 'flowchart LR\n  a -- "x{}y" --> b\n',
    "edge pipes": 'flowchart LR\n  a -->|"x{}y"| b\n',
    "subgraph title": 'flowchart LR\n  subgraph s ["x{}y"]\n    a\n  end\n',
}


def _label_case(char_id: str, position: str) -> str:
    return f"label {position}: {char_id}"


def reference_label_escape(text: str) -> str:
    """The escaping validators.py recommends: `#` first, since the others write a `#`."""
    codes = {"#": "#35;", "&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;"}
    for char, code in codes.items():
        text = text.replace(char, code)
    return text


AWKWARD_LABELS = [
    'say "hi"',
    '"',
    'q"',
    "x<y",
    "<script>alert(1)</script>",
    "a < b > c",
    "C#1;",
    "#quot;",
    "&lt;",
    "`md`",
    "(B, T, C) → (B, T, 4C)",
    "x²ᵀ⁻¹ × y",
    "[{|}]",
    "%% not a comment",
    "a --> b",
    "end",
    "\\",
    '\\"',
    "a;b",
    "# x;",
    "50%",
    "@{ shape: rect }",
]


ALL_MERMAID = {
    "valid flowchart": VALID_FLOWCHART,
    **{name: text for name, (text, _) in INVALID_MERMAID.items()},
    **SLIPS_THROUGH,
    **{
        _label_case(char_id, position): template.replace("{}", char)
        for char_id, (char, _) in LABEL_CHARACTERS.items()
        for position, template in LABEL_POSITIONS.items()
    },
    **{
        f"escaped {position}: {label}": template.replace("x{}y", reference_label_escape(label))
        for label in AWKWARD_LABELS
        for position, template in LABEL_POSITIONS.items()
    },
}


@pytest.fixture(scope="module")
def mermaid_failures() -> dict[str, str]:
    return mermaid_errors(ALL_MERMAID)


def test_valid_flowchart_parses(mermaid_failures):
    assert "valid flowchart" not in mermaid_failures


@pytest.mark.parametrize("name", INVALID_MERMAID)
def test_invalid_mermaid_is_caught_with_its_line(mermaid_failures, name):
    _, fragment = INVALID_MERMAID[name]
    assert name in mermaid_failures, f"Mermaid accepted the {name} case"
    assert fragment in mermaid_failures[name]


@pytest.mark.parametrize("name", SLIPS_THROUGH)
def test_some_mistakes_slip_past_the_parser(mermaid_failures, name):
    # If one of these starts failing, Mermaid got stricter: move it to INVALID_MERMAID.
    assert name not in mermaid_failures


@pytest.mark.parametrize("position", LABEL_POSITIONS)
@pytest.mark.parametrize("char_id", LABEL_CHARACTERS)
def test_label_character_parses_as_recorded(mermaid_failures, char_id, position):
    char, parses = LABEL_CHARACTERS[char_id]
    failed = _label_case(char_id, position) in mermaid_failures
    assert failed != parses, f"{char!r} in a {position} label: expected parses={parses}"


@pytest.mark.parametrize("position", LABEL_POSITIONS)
def test_escaped_awkward_labels_parse(mermaid_failures, position):
    failed = [
        label for label in AWKWARD_LABELS if f"escaped {position}: {label}" in mermaid_failures
    ]
    assert failed == []


def test_mermaid_errors_of_nothing_is_empty():
    assert mermaid_errors({}) == {}


def test_missing_mermaid_skips_here_but_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(validators, "NODE_MODULES", tmp_path / "node_modules")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="diagram-tools.sh"):
        mermaid_errors({"a": VALID_FLOWCHART})
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="installs it in CI"):
        mermaid_errors({"a": VALID_FLOWCHART})


VALID_DOT = """\
digraph resnet {
  rankdir=LR;
  node [shape=box, fontname="Helvetica"];
  x [label="x (B, 3, H, W)", shape=oval];
  subgraph cluster_stem {
    label="stem";
    conv [label="Conv2d 3→64, 7×7"];
    bn [label="BatchNorm2d"];
  }
  add [label="+", shape=circle];
  x -> conv -> bn;
  bn -> add [label="(B, 64, H/2, W/2)"];
  x -> add [label="skip", style=dashed];
  add -> y;
  y [label="y \\"logits\\"", shape=oval];
}
"""

# name -> (text, a fragment the error must contain)
INVALID_DOT = {
    "missing brace": ("digraph g {\n  a -> b;\n  b -> c;\n", "syntax error in line"),
    "arrow in undirected graph": ("graph g {\n  a -> b;\n}\n", "line 2 near '->': a -> b;"),
    "unescaped quote": ('digraph g {\n  a [label="say "hi""];\n}\n', "line 2"),
    "empty text": ("", "no graph"),
    "unknown colour": ("digraph g {\n  a [color=nocolor];\n}\n", "nocolor is not a known color"),
}


def test_valid_dot_renders():
    assert dot_errors({"valid": VALID_DOT}) == {}


def test_invalid_dot_is_caught_with_its_line():
    failures = dot_errors({name: text for name, (text, _) in INVALID_DOT.items()})
    assert set(failures) == set(INVALID_DOT)
    for name, (_, fragment) in INVALID_DOT.items():
        assert fragment in failures[name], name


def test_dot_warnings_can_be_allowed():
    assert dot_errors({"c": INVALID_DOT["unknown colour"][0]}, allow_warnings=True) == {}


def test_missing_dot_skips_here_but_fails_in_ci(monkeypatch):
    monkeypatch.setattr(validators.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="diagram-tools.sh"):
        dot_errors({"valid": VALID_DOT})
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="installs it in CI"):
        dot_errors({"valid": VALID_DOT})
