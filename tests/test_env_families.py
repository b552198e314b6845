"""One home for what htsrl knows of an env from its id (htsrl/env_families.py) and for the algorithms
(htsrl/algo_rules.py): the records are whole, and no other module reads an id's spelling."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import pytest

from htsrl.algo_rules import ALGORITHMS, ALGOS, algo_help, algorithm
from htsrl.env_families import (
    ATARI,
    DEBUG,
    FAMILIES,
    FOOTBALL,
    FOOTBALL_PLAYERS,
    GYMNASIUM,
    MUJOCO,
    SYNTHETIC,
    USER,
    env_players,
    envpool_task,
    family_of,
)
from htsrl.errors import ConfigError
from htsrl.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "env_id,family",
    [
        ("ALE/Breakout-v5", ATARI),
        ("PongNoFrameskip-v4", ATARI),
        ("football/academy_corner", FOOTBALL),
        ("HalfCheetah-v5", MUJOCO),
        ("Walker2d-v4", MUJOCO),
        ("synthetic/exponential", SYNTHETIC),
        ("htsrl/Counter-v0", DEBUG),
        ("my_envs:Corridor-v0", USER),
        ("CartPole-v1", GYMNASIUM),
        ("Pendulum-v1", GYMNASIUM),
        ("Breakout-v4", GYMNASIUM),  # an older Atari id: not the pipeline's (envs refuses it by its entry point)
    ],
)
def test_family_of(env_id, family):
    assert family_of(env_id) is family


def test_every_family_names_an_existing_preset_for_every_algorithm():
    for family in FAMILIES:
        assert set(family.presets) == set(ALGOS), family.name
        presets = [*family.presets.values(), *(p for by_algo in family.id_presets.values() for p in by_algo.values())]
        assert set(presets) <= set(PRESETS), family.name


def test_frames_players_and_envpool_task():
    assert [f.frames_per_step for f in FAMILIES] == [4 if f is ATARI else 1 for f in FAMILIES]
    assert envpool_task("ALE/Breakout-v5") == envpool_task("BreakoutNoFrameskip-v4") == "Breakout-v5"
    assert envpool_task("CartPole-v1") is None and envpool_task("football/academy_corner") is None
    assert env_players("football/academy_corner", {}) == 1
    assert env_players("football/academy_corner", {"left_players": 3, "right_players": 2}) == 5
    assert env_players("football/academy_corner", {"left_players": "3"}) == 1  # the env refuses it
    assert env_players("CartPole-v1", {"left_players": 3}) == 1
    assert env_players("football/academy_corner", None) == 1


def test_football_env_takes_the_family_player_defaults():
    from htsrl.envs.football import FootballEnv

    params = inspect.signature(FootballEnv).parameters
    assert {k: params[k].default for k in FOOTBALL_PLAYERS} == FOOTBALL_PLAYERS


def test_algorithm_registry():
    from htsrl.algos import update_function

    assert ALGOS == ("ppo", "a2c", "impala")
    assert algo_help() == "ppo, a2c or impala (IMPALA's actor-critic loss on V-trace targets, Espeholt et al. 2018)"
    for name, entry in ALGORITHMS.items():
        fn = update_function(name)
        assert fn.__name__ == entry.update.partition(":")[2]
        takes = list(inspect.signature(fn).parameters)
        assert ("generator" in takes) == entry.minibatches, name  # the calling convention algos.update uses
        assert entry.minibatches or entry.atari_shards == 1, name  # shards split minibatches
    with pytest.raises(ConfigError, match=r"--algo must be one of \['ppo', 'a2c', 'impala'\], got 'dqn'"):
        algorithm("dqn")


def _reads_an_env_id(node: ast.AST) -> bool:
    """``env``, ``env_id``, ``cfg.env``, ``d.get("env", ...)``, ``d["env"]``."""
    if isinstance(node, ast.Name):
        return node.id in ("env", "env_id")
    if isinstance(node, ast.Attribute):
        return node.attr == "env"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "env"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "env"
    return False


def spelling_reads(path: Path) -> list[str]:
    """Where a module tests or takes apart an env id's text: a str method on it, or a comparison with text."""
    methods = {"startswith", "endswith", "removeprefix", "removesuffix", "partition", "rpartition", "split", "rsplit"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods:
            if _reads_an_env_id(node.func.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides) and any(
                _reads_an_env_id(s) for s in sides
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_env_families_reads_an_env_id_spelling():
    others = [p for p in sorted((ROOT / "htsrl").rglob("*.py")) if p.name != "env_families.py"]
    found = [r for p in others for r in spelling_reads(p)]
    assert not found, found
    assert spelling_reads(ROOT / "htsrl" / "env_families.py")  # the scan sees the reads where they are


def test_no_import_cycle():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    graph_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph_module)
    graph = graph_module.build_graph(ROOT / "htsrl")
    assert "htsrl.envs.sets" in graph["htsrl.envs.atari"] and "htsrl.envs" not in graph["htsrl.envs.atari"]
    assert graph_module.cycles(graph) == []
