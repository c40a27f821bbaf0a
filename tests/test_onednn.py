"""oneDNN's bf16 + channels_last heap corruption (torch 2.14.1 / oneDNN 3.12.0 on AVX512-BF16 CPUs): the probe
tells crashes from clean runs, the check script reports this machine, and ComputeFormat falls back with one line."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import NO_BF16_KERNELS, REPO

from bdl import onednn, runtime


def test_probe_tells_a_crash_from_a_clean_run():
    assert onednn.verdict([sys.executable, "-c", "print('ok')"]) == (True, "ok")
    safe, detail = onednn.verdict([sys.executable, "-c", "import os, sys; print('heap corrupt', file=sys.stderr); "
                                                         "sys.stderr.flush(); os.abort()"])
    assert not safe and detail.startswith("exit -6") and "heap corrupt" in detail
    assert onednn.verdict([sys.executable, "-c", "print('no')"])[0] is False


def test_check_script_reports_this_machine_and_the_workaround_is_safe():
    proc = subprocess.run([sys.executable, "benchmarks/onednn_check.py"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.splitlines()[0]
    assert line.startswith(f"oneDNN check: torch {torch.__version__}, oneDNN ") and "avx512_bf16" in line
    print(line)  # shown with -rP / -s; `make test` prints the same line before the suite
    capped = subprocess.run([sys.executable, "benchmarks/onednn_check.py", "--strict"], cwd=REPO,
                            capture_output=True, text=True, env=os.environ | NO_BF16_KERNELS)
    assert capped.returncode == 0 and "ONEDNN_MAX_CPU_ISA=AVX2: bf16 + channels_last training is safe" in capped.stdout


@pytest.fixture
def fake_probe(monkeypatch):
    calls = []

    def install(answer):
        monkeypatch.setattr(onednn, "probe", lambda: calls.append(1) or answer)
        monkeypatch.setattr(runtime, "_warned", False)
        return calls

    return install


def test_affected_cpu_turns_channels_last_off_with_one_line(fake_probe, capsys):
    fake_probe((False, "exit -6: double free or corruption (!prev)"))
    cpu = torch.device("cpu")
    first, second = runtime.ComputeFormat(cpu, "on", "on"), runtime.ComputeFormat(cpu, "on", "on")
    assert first.bf16 and not first.channels_last and not second.channels_last
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runtime: channels_last turned off for this job: torch ")
    assert "corrupts memory (exit -6: double free" in lines[0] and "ONEDNN_MAX_CPU_ISA=AVX2" in lines[0]


def test_safe_cpu_and_other_settings_keep_what_was_asked(fake_probe, capsys):
    calls = fake_probe((True, "ok"))
    cpu = torch.device("cpu")
    assert runtime.ComputeFormat(cpu, "on", "on").channels_last and len(calls) == 1
    fake_probe((False, "faked"))
    # the probe runs only for the combination that can corrupt: bf16 and channels_last both on, on a CPU
    fmt = runtime.ComputeFormat
    assert fmt(cpu, "off", "on").channels_last and fmt(cpu, "auto", "on").channels_last
    assert not fmt(cpu, "on", "off").channels_last and fmt(cpu, "on", "off").bf16
    assert len(calls) == 1 and capsys.readouterr().err == ""
