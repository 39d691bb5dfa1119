"""Reading template.yaml and the Rust sources it must agree with.

- `load` parses CloudFormation YAML, short-form tags (`!Ref`, `!GetAtt`, `!Sub`,
  ...) included, into the long form (`{"Ref": ...}`, `{"Fn::GetAtt": [...]}`).
- `function_env_vars` finds, from `shared/src/config.rs`, which environment
  variables each configuration entry point reads and which it requires.
"""

import copy
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- template

class _Loader(yaml.SafeLoader):
    """A YAML loader that understands CloudFormation's short-form tags."""


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else ("Condition" if suffix == "Condition" else f"Fn::{suffix}")
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def load(text):
    """The template as plain dicts and lists, intrinsic functions in long form."""
    return yaml.load(text, Loader=_Loader)


def load_file(path=ROOT / "template.yaml"):
    """`load` of a file."""
    return load(Path(path).read_text())


def ref_target(value):
    """The logical id (or parameter) a `Ref`/`GetAtt` names, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def sub_targets(value):
    """Every logical id a value refers to, `Fn::Sub` placeholders and `Fn::If` branches included."""
    found = set()
    if isinstance(value, dict):
        target = ref_target(value)
        if target:
            found.add(target)
        elif "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
        else:
            for v in value.values():
                found |= sub_targets(v)
    elif isinstance(value, list):
        for v in value:
            found |= sub_targets(v)
    return found


def resources(template, type_=None):
    """`{logical id: resource}`, optionally of one type."""
    return {
        name: res
        for name, res in template.get("Resources", {}).items()
        if type_ is None or res.get("Type") == type_
    }


def merge(base, override):
    """SAM's Globals merge: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for k, v in override.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(override)


def function_properties(template, name):
    """A serverless function's properties with Globals applied."""
    globals_ = template.get("Globals", {}).get("Function", {})
    return merge(globals_, template["Resources"][name].get("Properties", {}))


# ---------------------------------------------------------------- Rust sources

_TOKEN = re.compile(
    r'(?P<str>r?"(?:\\.|[^"\\])*")|(?P<comment>//[^\n]*)|(?P<char>\'(?:\\.|[^\\\'\n])\')'
)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_[A-Z0-9_]*[A-Z0-9]$")


def _mask(src):
    """The source with comments and literal contents blanked (same offsets), and its string literals."""
    masked, literals, last = [], [], 0
    for m in _TOKEN.finditer(src):
        masked.append(src[last:m.start()])
        if m.group("str"):
            body = m.group("str")
            quote = body.index('"')
            literals.append((m.start(), body[quote + 1:-1]))
            masked.append(body[:quote + 1] + " " * (len(body) - quote - 2) + '"')
        else:
            masked.append(" " * (m.end() - m.start()))
        last = m.end()
    masked.append(src[last:])
    return "".join(masked), literals


def _block_end(masked, open_brace):
    depth = 0
    for i in range(open_brace, len(masked)):
        if masked[i] == "{":
            depth += 1
        elif masked[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced braces")


def _paren_args(masked, open_paren):
    depth = 0
    for i in range(open_paren, len(masked)):
        depth += {"(": 1, ")": -1}.get(masked[i], 0)
        if depth == 0:
            return open_paren + 1, i
    raise ValueError("unbalanced parentheses")


def _functions(src):
    """`{"Type::fn" or "fn": (start, end)}` for every fn body outside `#[cfg(test)]` modules."""
    masked, _ = _mask(src)
    test_spans = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", masked):
        test_spans.append((m.start(), _block_end(masked, m.end() - 1)))
    impls = []
    for m in re.finditer(r"\bimpl\b[^{;]*?\bfor\s+(\w+)[^{;]*\{|\bimpl\b(?:<[^>]*>)?\s+(\w+)[^{;]*\{", masked):
        impls.append((m.start(), _block_end(masked, m.end() - 1), m.group(1) or m.group(2)))
    fns = {}
    for m in re.finditer(r"\bfn\s+(\w+)", masked):
        if any(a <= m.start() <= b for a, b in test_spans):
            continue
        brace, semi = masked.find("{", m.end()), masked.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue  # a declaration without a body
        owner = next((t for a, b, t in impls if a < m.start() < b), None)
        key = f"{owner}::{m.group(1)}" if owner else m.group(1)
        fns[key] = (brace, _block_end(masked, brace))
    return fns


def entry_point_env_vars(src, entry):
    """`(read, required)`: the environment variable names `entry` (e.g.
    `ReceiveConfig::from_env`) and every function of the file it calls read,
    and those it passes to `required(...)`."""
    masked, literals = _mask(src)
    fns = _functions(src)

    def names_in(a, b):
        return {v for pos, v in literals if a <= pos < b and _ENV_NAME.match(v)}

    def callees(a, b, owner):
        out = set()
        for m in re.finditer(r"\b(?:(\w+)::)?(\w+)\s*\(", masked[a:b]):
            ty, name = m.group(1), m.group(2)
            ty = owner if ty == "Self" else ty
            if ty and f"{ty}::{name}" in fns:
                out.add(f"{ty}::{name}")
            elif name in fns:
                out.add(name)
        return out

    def reach(start_fns):
        seen, todo = set(), list(start_fns)
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            a, b = fns[f]
            todo.extend(callees(a, b, f.split("::")[0] if "::" in f else None))
        return seen

    reached = reach([entry])
    read, required = set(), set()
    for f in reached:
        a, b = fns[f]
        read |= names_in(a, b)
        for m in re.finditer(r"\brequired\s*\(", masked[a:b]):
            lo, hi = _paren_args(masked, a + m.end() - 1)
            required |= names_in(lo, hi)
            for g in reach(callees(lo, hi, None)):
                required |= names_in(*fns[g])
    return read, required


def direct_env_reads(src):
    """Names read straight from the process environment (`env::var("X")`, `var_os("X")`)."""
    found = set(re.findall(r'\bvar(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', src))
    if "from_default_env" in src:
        found.add("RUST_LOG")  # tracing_subscriber's EnvFilter
    return found


def workspace_binaries(root=ROOT):
    """`{binary name: crate dir}` for every function crate (its `[[bin]]`s, else the package)."""
    bins = {}
    for manifest in sorted((root / "functions").glob("*/Cargo.toml")):
        data = _toml(manifest.read_text())
        names = [b["name"] for b in data.get("bin", []) if "name" in b] or [data["package"]["name"]]
        for name in names:
            bins[name] = manifest.parent
    return bins


def _toml(text):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: the little we need
        data, table = {"package": {}, "bin": []}, None
        for line in text.splitlines():
            line = line.strip()
            if line == "[package]":
                table = data["package"]
            elif line == "[[bin]]":
                table = {}
                data["bin"].append(table)
            elif line.startswith("["):
                table = None
            elif table is not None and (m := re.match(r'(\w+)\s*=\s*"([^"]*)"', line)):
                table[m.group(1)] = m.group(2)
        return data
    return tomllib.loads(text)
