"""One home for each piece of knowledge (docs/ARCHITECTURE.md, "Modules, and who asks whom"): these tests
fail when a module starts spelling what another module owns. Env ids and the import graph:
tests/test_env_families.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from htsrl import run_dir

ROOT = Path(__file__).resolve().parents[1]
RUN_FILE_NAMES = {*run_dir.RUN_FILES, run_dir.LOCK, run_dir.GROUP, run_dir.GROUP_CONFIG}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (they may name files: they only describe)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def run_file_spellings(path: Path, root: Path = ROOT) -> list[str]:
    """Code strings that are a run file's name or end in ``/<name>``: a path built outside RunDir."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if text in RUN_FILE_NAMES or any(text.endswith("/" + name) for name in RUN_FILE_NAMES):
                found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}: {text!r}"))
    return [hit for _, hit in sorted(found)]


def test_only_run_dir_spells_a_run_file_name():
    found = [
        hit
        for path in sorted((ROOT / "htsrl").rglob("*.py"))
        if path.name != "run_dir.py"
        for hit in run_file_spellings(path)
    ]
    assert found == [], "ask htsrl.run_dir.RunDir for these paths:\n" + "\n".join(found)


def test_the_check_sees_a_spelled_name(tmp_path):
    """The scan above can fail: a path built from a run file's name is found, a docstring naming one is not."""
    module = tmp_path / "m.py"
    module.write_text(
        '"""Writes summary.json."""\nfrom pathlib import Path\nPath("r") / "summary.json"\nx = "r/pids.json"\n'
    )
    assert run_file_spellings(module, tmp_path) == ["m.py:3: 'summary.json'", "m.py:4: 'r/pids.json'"]


def test_the_architecture_picture_places_every_module():
    """scripts/architecture_picture.py draws docs/img/architecture.png; a module in no group fails here."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "architecture_picture.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


# -- extending htsrl (docs/ARCHITECTURE.md, "Extending htsrl"): each worked example, run


def normalized_a2c_update(cfg, model, optimizer, w, dp):
    """The docs' example algorithm: A2C whose advantages are normalized over the window."""
    from htsrl.algos.returns import gae, window_forward
    from htsrl.algos.step import actor_critic_step

    T, N = w.reward.shape
    B = T * N * dp.world_size
    f = window_forward(model, w)
    _, returns = gae(w, f.next_values, f.trunc, cfg.gamma, cfg.gae_lambda)
    adv = returns - f.values
    norm = (adv.detach() - adv.detach().mean()) / (adv.detach().std() + 1e-8)
    policy_loss = -(norm * f.logp).sum() / B
    value_loss = adv.pow(2).sum() / B
    entropy = f.dist.entropy_sum() / B
    return actor_critic_step(cfg, model, optimizer, dp, policy_loss, value_loss, entropy, (w.logp - f.logp).sum() / B)


def test_a_new_algorithm_is_one_function_and_one_registry_line(tmp_path, monkeypatch):
    import htsrl
    from htsrl import algo_rules

    entry = algo_rules.Algorithm("normalized-a2c", f"{__name__}:normalized_a2c_update")
    monkeypatch.setitem(algo_rules.ALGORITHMS, entry.name, entry)  # the registry line
    cfg = htsrl.Config(
        env="CartPole-v1", algo="normalized-a2c", preset="classic-a2c", num_envs=4, total_steps=400,
        run_dir=str(tmp_path / "run"), progress=False,
    )  # fmt: skip
    summary = htsrl.train(cfg)
    assert summary["algo"] == "normalized-a2c" and summary["updates"] == 20 and summary["finished"]


def test_a_new_env_family_is_one_record(tmp_path, monkeypatch):
    """A family whose ids start with ``counters/``, stepping the debug counter env, trains with its own preset."""
    import gymnasium as gym

    import htsrl
    from htsrl import env_families

    family = env_families.EnvFamily("counters", {"ppo": "classic-a2c", "a2c": "classic-a2c"}, prefix="counters/")
    monkeypatch.setattr(env_families, "FAMILIES", (family, *env_families.FAMILIES))  # the registry line
    import htsrl.envs.debug  # noqa: F401  (registers the htsrl/ ids, whose entry point the new id reuses)

    gym.register(family.id_of("Counter-v0"), entry_point=gym.spec("htsrl/Counter-v0").entry_point)
    try:
        cfg = htsrl.Config(env="counters/Counter-v0", num_envs=2, total_steps=64, run_dir=str(tmp_path / "r"))
        cfg.progress = False
        summary = htsrl.train(cfg)
    finally:
        gym.registry.pop("counters/Counter-v0")
    assert env_families.family_of("counters/Counter-v0") is family and summary["finished"]
    assert (tmp_path / "r" / "config.json").read_text().count('"preset": "classic-a2c"') == 1
