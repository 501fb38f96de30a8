"""The README's drop-in snippet runs as written and computes the right thing."""

import pathlib
import re

from _mla_testing import assert_matches_reference, torch
from flash_mla.reference import mla_decode_reference

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _snippet():
    text = README.read_text()
    match = re.search(r"<!-- python-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its <!-- python-snippet --> block"
    return match.group(1)


def test_readme_snippet_runs_as_written():
    scope = {}
    exec(compile(_snippet(), str(README), "exec"), scope)  # noqa: S102 - our own README
    ref_out, ref_lse = mla_decode_reference(scope["q"], scope["k_cache"], scope["block_table"],
                                            scope["cache_seqlens"], 512, None, True)
    assert_matches_reference(scope["out"], scope["lse"], ref_out, ref_lse, scope["q"].dtype)
    torch.cuda.synchronize()
