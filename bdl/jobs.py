"""How the workflow's jobs call the stages: the shell prefix of every rule. No torch, no snakemake."""

import shlex
from pathlib import Path


def uses_conda(deployment_methods) -> bool:
    """Whether snakemake deploys each rule's conda env (``--software-deployment-method conda``)."""
    return any(str(getattr(m, "name", m)).lower() == "conda" for m in deployment_methods or ())


def shell_prefix(root: Path, python: str, conda: bool) -> str:
    """``BDL_STAGES`` names the repository's stage scripts by absolute path, so jobs run from any working
    folder and under a module; ``python`` is the interpreter running snakemake (a venv's, say), put first on
    PATH, except under conda, where snakemake has activated the rule's env and its python must win."""
    parts = ["set -euo pipefail", f"export BDL_STAGES={shlex.quote(str(Path(root) / 'stages'))}"]
    if not conda:
        parts.append(f'export PATH={shlex.quote(str(Path(python).parent))}:"$PATH"')
    return "; ".join(parts) + "; "
