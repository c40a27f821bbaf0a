import subprocess
import sys

from conftest import REPO


def test_setup_torch_on_cpu_turns_on_deterministic_algorithms_without_loading_inductor():
    # A fresh process: the flag is global, and the point is what setup_torch itself imports.
    code = (
        "import sys, torch\n"
        "from bdl.training import setup_torch\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "setup_torch(torch.device('cpu'), 1)\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " torch.get_num_threads(), 'torch._inductor' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "1", "False"]
