"""Run the suite as on a CPU with or without bfloat16 hardware, whatever this one has:

    PYTHONPATH=tests/probe CPU_BFLOAT16=0 python -m pytest -q    # as on an AVX2-only laptop
    PYTHONPATH=tests/probe CPU_BFLOAT16=1 python -m pytest -q    # as with AVX512-BF16 or AMX

Python imports this file at start-up in the test process and in every script it starts. Once torch
is imported, its two hardware probes answer as CPU_BFLOAT16 says (1: bfloat16 is emulated if absent).
"""
import builtins
import os
import sys

if os.environ.get("CPU_BFLOAT16") in ("0", "1"):
    answer, real_import = os.environ["CPU_BFLOAT16"] == "1", builtins.__import__

    def import_and_patch(name, *args, **kwargs):
        module = real_import(name, *args, **kwargs)
        cpu = getattr(sys.modules.get("torch"), "cpu", None)   # torch.cpu, once torch has it
        if cpu is not None:
            cpu._is_avx512_bf16_supported = cpu._is_amx_tile_supported = lambda: answer
            builtins.__import__ = real_import
        return module
    builtins.__import__ = import_and_patch
