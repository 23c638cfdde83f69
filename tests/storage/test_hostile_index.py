"""Issue 16 acceptance: a hostile index directory can only ever produce a typed error.

A seeded fuzz loop mutates manifest.json, the lexical index's JSON files and
the headers of its .npy arrays in a copy of a real index (dense + lexical),
often re-forging the manifest's checksum so that the deeper parsers are
reached, then loads, searches and describes the index. Every attempt must
either work or raise a `DigestRagError`; on the CLI that is exit 2 with one
line and no traceback. The loop is bounded in time (a few seconds), and each
failure names its seed and mutation so that it can be replayed.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest_rag import DigestIndex, DigestRagError
from digest_rag.frontends.cli import app

FUZZ_SECONDS = 6.0
MIN_ATTEMPTS = 60
LEXICAL_JSON = ("lexical/lexical.json", "lexical/lexical.params.json")
LEXICAL_NPY = ("lexical/lexical.data.npy", "lexical/lexical.indices.npy", "lexical/lexical.indptr.npy",
               "lexical/lexical.chunk_ids.npy", "lexical/lexical.vocab_bytes.npy", "lexical/lexical.vocab_offsets.npy",
               "lexical/lexical.vocab_ids.npy")

HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, 1.5, 2**63, 10**400, float("inf"), float("nan"), "", "x" * 100_000, "../../etc", "/etc/passwd",
    "gen-../x", "\ud800", [], {}, [1, [2, [3]]], {"a": {"b": None}}, "gen-" + "a" * 64, 99,
]


def _deep(n: int) -> str:
    return "[" * n


def _json_mutation(rng: random.Random, text: str) -> tuple[str, str]:
    """A hostile variant of a JSON text, and what was done (for the failure message)."""
    kind = rng.choice(["truncate", "flip", "nest", "nest-inside", "value", "drop-key", "bigint", "garbage"])
    if kind == "truncate":
        at = rng.randrange(len(text))
        return text[:at], f"truncate at {at}"
    if kind == "flip":
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice('{}[]":,0\\ x\x00')
        return "".join(chars), "flip characters"
    if kind == "nest":
        n = rng.choice([1_000, 5_000, 200_000])
        return _deep(n), f"{n} nested lists"
    if kind == "garbage":
        return rng.choice(["", "\ufeff{}", "null", "[]", "1", '"x"', "{" * 3]), "garbage"
    if kind == "bigint":
        return text.replace("1", "1" + "0" * 5000, 1), "5000-digit integer"
    obj = json.loads(text)
    if not isinstance(obj, dict) or not obj:
        return _deep(100_000), "nested lists"
    key = rng.choice(sorted(obj))
    if kind == "drop-key":
        del obj[key]
        return json.dumps(obj), f"drop {key}"
    if kind == "nest-inside":
        return json.dumps(obj)[:-1] + f', "zz": {_deep(100_000)}', f"nesting after {key}"
    target = obj
    if isinstance(obj[key], dict) and obj[key] and rng.random() < 0.5:
        target, key = obj[key], rng.choice(sorted(obj[key]))
    value = rng.choice(HOSTILE_VALUES)
    target[key] = value
    return json.dumps(obj), f"set {key} = {repr(value)[:40]}"


def _npy_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A .npy file whose header lies, or whose magic, version or header length is damaged."""
    from numpy.lib import format as npy_format

    hlen = int.from_bytes(data[8:10], "little")
    payload = data[10 + hlen:]
    kind = rng.choice(["shape", "descr", "raw-header", "magic", "header-length"])
    if kind in ("shape", "descr"):
        header = {"descr": "<f4", "fortran_order": rng.random() < 0.2, "shape": (len(payload) // 4,)}
        if kind == "shape":
            header["shape"] = rng.choice([(10**10,), (2**62,), (10**6, 10**6), (0,), (1,), (3, 4), (),
                                          (len(payload),), (len(payload) // 8 + 1,)])
        else:
            header["descr"] = rng.choice(["<f8", "<i8", "<i2", "|O", "<U8", "V16", ">f4", "|b1", "<c8", "<M8[D]"])
        buf = io.BytesIO()
        npy_format.write_array_header_1_0(buf, header)
        return buf.getvalue() + payload, f"header {header}"
    if kind == "raw-header":
        text = rng.choice(["{'descr': '<f4', 'fortran_order': False, 'shape': (" + "(" * 5000 + "}",
                           "{'descr': '<f4'}", "__import__('os').system('true')", "{'descr': '<f4', "
                           "'fortran_order': False, 'shape': (-1,), }", "x" * 9000])
        head = text.encode("latin1") + b"\n"
        return data[:8] + len(head).to_bytes(2, "little") + head + payload, f"raw header {text[:40]!r}"
    if kind == "magic":
        return rng.choice([b"\x93NUMPY\x09\x00", b"PK\x03\x04\x00\x00\x00\x00", b"\x93NUMPY\x03\x00"]) + data[8:], kind
    return data[:8] + b"\xff\xff" + data[10:], kind


def _forge_checksum(ix: Path, name: str) -> None:
    mpath = ix / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"][name] = hashlib.sha256((ix / m["data_dir"] / name).read_bytes()).hexdigest()
    mpath.write_text(json.dumps(m))


def _use(ix: Path, verify: bool) -> None:
    """What a user does with an index: load, search, describe."""
    idx = DigestIndex.load(ix, verify=verify)
    try:
        idx.search("Gemma 2 지식 증류", k=3, mode="lexical")
        idx.search("scaling laws", k=3, mode="lexical", tags=["llm"])
        idx.info()
    finally:
        idx.close()


@pytest.fixture()
def fuzz_copy(tmp_path: Path, seed_index_dir: Path) -> Path:
    return Path(shutil.copytree(seed_index_dir, tmp_path / "ix"))


def test_fuzzed_index_files_only_raise_typed_errors(fuzz_copy: Path) -> None:
    ix = fuzz_copy
    gen = ix / json.loads((ix / "manifest.json").read_text())["data_dir"]
    originals = {p: p.read_bytes() for p in [ix / "manifest.json", *(gen / n for n in LEXICAL_JSON + LEXICAL_NPY)]}
    _use(ix, verify=True)  # the unmutated copy works
    rng = random.Random(16)
    deadline = time.monotonic() + FUZZ_SECONDS
    attempts, typed = 0, 0
    while attempts < MIN_ATTEMPTS or time.monotonic() < deadline:
        seed = rng.randrange(2**32)
        r = random.Random(seed)
        target = r.choice(["manifest.json", *LEXICAL_JSON, *LEXICAL_NPY])
        if target == "manifest.json":
            text, what = _json_mutation(r, originals[ix / "manifest.json"].decode())
            (ix / "manifest.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            f = gen / target
            if target.endswith(".npy"):
                data, what = _npy_mutation(r, originals[f])
                f.write_bytes(data)
            else:
                text, what = _json_mutation(r, originals[f].decode())
                f.write_text(text, encoding="utf-8", errors="surrogatepass")
            if r.random() < 0.8:
                _forge_checksum(ix, target)  # get past the sha256 check, to the parser
        verify = r.random() < 0.5
        try:
            _use(ix, verify)
        except DigestRagError:
            typed += 1
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"seed {seed}: {target}: {what} (verify={verify}) raised {type(exc).__name__}: {exc!s:.300}")
        finally:
            for p, data in originals.items():
                p.write_bytes(data)
        attempts += 1
    print(f"fuzz: {attempts} attempts, {typed} typed errors")
    assert typed > attempts // 2  # the mutations do reach the checks


CLI_CASES: dict[str, Callable[[Path], None]] = {}


def _cli_case(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    CLI_CASES[fn.__name__.lstrip("_")] = fn
    return fn


@_cli_case
def _nested_manifest(ix: Path) -> None:
    (ix / "manifest.json").write_text(_deep(200_000))


@_cli_case
def _nested_vocab(ix: Path) -> None:
    """A format-2 lexical index (vocabulary as JSON, still read) whose vocabulary is nested 200k deep."""
    gen = ix / json.loads((ix / "manifest.json").read_text())["data_dir"]
    meta = json.loads((gen / LEXICAL_JSON[0]).read_text())
    (gen / LEXICAL_JSON[0]).write_text(json.dumps({**meta, "format": 2}))
    _forge_checksum(ix, LEXICAL_JSON[0])
    (gen / "lexical/lexical.vocab.json").write_text(_deep(200_000))
    _forge_checksum(ix, "lexical/lexical.vocab.json")


@_cli_case
def _npy_wants_1e10(ix: Path) -> None:
    from numpy.lib import format as npy_format

    gen = ix / json.loads((ix / "manifest.json").read_text())["data_dir"]
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**10,)})
    (gen / LEXICAL_NPY[0]).write_bytes(buf.getvalue() + b"\0" * 64)
    _forge_checksum(ix, LEXICAL_NPY[0])


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_hostile_index_on_the_cli_is_one_line_exit_2(fuzz_copy: Path, case: str) -> None:
    CLI_CASES[case](fuzz_copy)
    for args in (["search", "Gemma 2", "--mode", "lexical"], ["info"]):
        res = CliRunner().invoke(app, [*args, "--index", str(fuzz_copy)])
        assert res.exit_code == 2, (case, args, res.output, res.exception)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and res.stdout == ""
    if case == "nested_manifest":
        # One real process too: nothing but the line reaches the terminal.
        out = subprocess.run([sys.executable, "-m", "digest_rag.frontends.cli", "info", "--index", str(fuzz_copy)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert "manifest.json" in out.stderr
