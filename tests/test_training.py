import subprocess
import sys

from conftest import REPO


def test_setup_torch_on_cpu_turns_on_deterministic_algorithms_without_loading_inductor():
    # A fresh process: the flag is global, and the point is what setup_torch itself imports.
    code = (
        "import sys, torch\n"
        "from bdl.runtime import setup_torch\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "setup_torch(torch.device('cpu'), 1)\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " torch.get_num_threads(), 'torch._inductor' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "1", "False"]


def test_freed_activations_stay_in_the_heap_instead_of_being_faulted_in_again():
    # The shape of a CPU forward: large blocks, all freed at the end of the batch. What glibc's adaptive
    # defaults do with it depends on the address layout (2,000 to 120,000 faults over these 5 batches in
    # 12 runs), so the control is fixed: blocks served by fresh mappings, the defaults' starting point.
    code = (
        "import ctypes, resource, sys, torch\n"
        "from bdl.runtime import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "else: assert ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MiB\n"
        "def batch():\n"
        "    blocks = [torch.ones(2 << 20) for _ in range(12)]  # 8 MiB each, 2,048 pages\n"
        "    del blocks\n"
        "batch(); batch()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(5): batch()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {mode: int(subprocess.run([sys.executable, "-c", code, mode], cwd=REPO, capture_output=True, text=True,
                                       check=True).stdout) for mode in ("keep", "mapped")}
    assert faults["mapped"] >= 5 * 12 * 2048 * 0.9, faults
    assert faults["keep"] <= 2 * 2048, faults


def test_a_later_switch_left_off_keeps_the_fingerprint():
    """A partial checkpoint written before --domain-bn existed resumes into a run without it; with it on, not."""
    from bdl.training import args_fingerprint

    before = {"lr": 0.1, "iterations": 10}
    assert args_fingerprint(before | {"domain_bn": False}) == args_fingerprint(before)
    assert args_fingerprint(before | {"domain_bn": True}) != args_fingerprint(before)
