"""Atari stepped by EnvPool's C++ engine (``--env-backend envpool``).

EnvPool runs ALE, frame skip 4 with max-pool, 84x84 gray resize and the 4-frame stack in C++ threads,
for a whole inference group in one call. Two of its defaults would break htsrl's invariants, so they
are done here instead:

- **No-op starts.** EnvPool draws them from a generator per env that lives as long as the pool, so an
  env's state would depend on every reset since the run began. Its no-ops are off (``noop_max=1``:
  the pool's seed then changes nothing) and each reset draws 0..7 NOOP agent steps (up to 28 frames,
  the DeepMind 30) from the reset's own seed (``streams.reset_seed``), as the Python backend draws
  its no-op frames.
- **Episodic life.** EnvPool's version resets through that same generator. Here a lost life ends the
  training episode, and the game goes on after one FIRE step (games with FIRE), without a reset.

So an env's state is a function of its last reset's seed and its actions since, and the engine's
replay (``engine/history.py``) rebuilds it in any process. EnvPool's other API difference, the step
after an episode end ignoring its action, never arises: htsrl resets the env explicitly
(``pool.reset(env_id)``) in the same step, as with any Gymnasium env. Rewards are sign-clipped here;
the true game score (all lives, unclipped) is reported at game over. Between resets the steps are
frame-identical to the Python backend's (tested); only the reset sequences differ (README).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from htsrl.env_families import ATARI, require_envpool_task
from htsrl.envs.sets import EPISODE_KEY, EnvSet
from htsrl.errors import ConfigError

NOOP, FIRE = 0, 1
MAX_NOOP_STEPS = 7
FRAME_SKIP = ATARI.frames_per_step
# Settings of EnvPool's Atari a user may pass in --env-kwargs; the rest are fixed above.
ALLOWED_KWARGS = (
    "full_action_space",
    "max_episode_steps",
    "repeat_action_probability",
    "mode",
    "difficulty",
    "render_mode",
)
INSTALL_HINT = "--env-backend envpool needs EnvPool: pip install 'htsrl[envpool]' (envpool 1.2.5 on Python 3.11)"


def _pool_kwargs(env_id: str, env_kwargs: dict | None) -> dict:
    kwargs = dict(env_kwargs or {})
    unknown = sorted(set(kwargs) - set(ALLOWED_KWARGS))
    if unknown:
        raise ConfigError(
            f"--env-kwargs {unknown} are not settings of the envpool backend; allowed: {list(ALLOWED_KWARGS)}"
        )
    if kwargs.get("repeat_action_probability", 0.0) != 0.0:
        raise ConfigError(
            "--env-backend envpool needs repeat_action_probability 0: EnvPool draws sticky actions "
            "from a generator no reset reseeds, so a run could not be replayed or resumed; "
            "use --env-backend python for sticky actions"
        )
    return dict(
        task_id=require_envpool_task(env_id),
        noop_max=1,
        episodic_life=False,
        reward_clip=False,
        use_fire_reset=True,
        frame_skip=FRAME_SKIP,
        stack_num=4,
        img_height=84,
        img_width=84,
        **kwargs,
    )


def probe_envpool(env_id: str, env_kwargs: dict | None) -> tuple[gym.Space, gym.Space]:
    """Spaces from EnvPool's spec: validates the id and kwargs without starting threads (the main
    process forks later)."""
    try:
        import ale_py  # noqa: F401  (the action meanings: which games need FIRE)
        import envpool
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    kwargs = _pool_kwargs(env_id, env_kwargs)
    task = kwargs.pop("task_id")
    if task not in envpool.list_all_envs():
        raise ConfigError(f"EnvPool has no Atari game {task!r} (from {env_id})")
    try:
        spec = envpool.make_spec(task, **kwargs)
    except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. a game mode it does not have
        raise ConfigError(f"cannot build {env_id} on EnvPool with --env-kwargs {env_kwargs}: {e}") from None
    return spec.observation_space, spec.action_space


def _has_fire(env_id: str, full_action_space: bool) -> bool:
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(env_id, full_action_space=full_action_space)
    try:
        return "FIRE" in env.unwrapped.get_action_meanings()
    finally:
        env.close()


def _step_raw(pool, local: np.ndarray, actions: np.ndarray) -> dict[int, tuple]:
    """Send one action to each env in ``local`` (pool indices), wait for all replies."""
    pool.send(actions.astype(np.int32, copy=False), local.astype(np.int32, copy=False))
    out = {}
    for _ in range(len(local)):
        obs, reward, terminated, truncated, info = pool.recv()
        out[int(info["env_id"][0])] = (
            obs[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            int(info["lives"][0]),
        )
    if sorted(out) != local.tolist():  # a reply left over from an interrupted step: never mix envs up
        raise RuntimeError(f"EnvPool answered envs {sorted(out)} to a step of envs {local.tolist()}")
    return out


class EnvPoolAtari(EnvSet):
    """One EnvPool for the envs of one process; ``envs[i]`` is env i seen as a Gymnasium env (for resets
    and replay), :meth:`step` steps several envs in one call.

    Nothing here holds a reference cycle, and :meth:`close` drops the pool, so the C++ pool and its
    threads are destroyed in the process that made them, at once: never by a later garbage collection,
    which could run in a forked child where those threads do not exist (and abort it)."""

    def __init__(
        self, env_id: str, env_kwargs: dict | None, columns: range, training: bool = True, num_threads: int = 1
    ):
        import envpool

        kwargs = _pool_kwargs(env_id, env_kwargs)
        self.columns = columns
        # batch_size 1: every reply is one env, so any subset of the pool can be stepped at a time.
        self.pool = envpool.make_gymnasium(
            num_envs=len(columns), batch_size=1, num_threads=num_threads, seed=0, **kwargs
        )
        has_fire = _has_fire(env_id, kwargs.get("full_action_space", False))
        super().__init__({i: PoolEnv(self.pool, j, has_fire, training) for j, i in enumerate(columns)})

    def step(self, ids: range, actions: np.ndarray) -> list[tuple]:
        local = np.arange(ids.start - self.columns.start, ids.stop - self.columns.start)
        raw = _step_raw(self.pool, local, np.asarray(actions))
        return [self.envs[i].after_step(*raw[j]) for i, j in zip(ids, local.tolist())]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for env in self.envs.values():
            env.pool = None
        self.pool = None


class PoolEnv(gym.Env):
    """Env ``j`` of an :class:`EnvPoolAtari`, with the Gymnasium API and htsrl's Atari semantics."""

    def __init__(self, pool, j: int, has_fire: bool, training: bool):
        self.pool, self.j, self.has_fire, self.training = pool, j, has_fire, training
        self.observation_space = pool.observation_space
        self.action_space = pool.action_space
        self.lost_life = False  # the last step ended a training episode by a lost life; the game goes on
        self.lives = 0
        self.score, self.frames = 0.0, 0

    def _one(self, action: int) -> tuple:
        return _step_raw(self.pool, np.array([self.j]), np.array([action]))[self.j]

    def _new_game(self) -> np.ndarray:
        obs, info = self.pool.reset(np.array([self.j], dtype=np.int32))
        if int(info["env_id"][0]) != self.j:  # a reply left over from an interrupted step: never mix envs up
            raise RuntimeError(f"EnvPool answered env {int(info['env_id'][0])} to a reset of env {self.j}")
        self.lives = int(info["lives"][0])
        self.score, self.frames = 0.0, 0
        return obs[0]

    def reset(self, *, seed: int | None = None, options=None):
        if self.lost_life:  # the game goes on, after FIRE where the game needs it
            self.lost_life = False
            if not self.has_fire:
                return self._last_obs, {}
            obs, reward, terminated, truncated, self.lives = self._one(FIRE)
            self.score += reward
            self.frames += FRAME_SKIP
            if not (terminated or truncated):
                return obs, {}
        obs = self._new_game()
        for _ in range(int(np.random.default_rng(seed).integers(0, MAX_NOOP_STEPS + 1))):
            obs, reward, terminated, truncated, self.lives = self._one(NOOP)
            self.score += reward
            self.frames += FRAME_SKIP
            if terminated or truncated:  # no game ends within 7 no-ops; were one to, start it clean
                obs = self._new_game()
                break
        return obs, {}

    def step(self, action):
        return self.after_step(*self._one(int(action)))

    def after_step(self, obs: np.ndarray, reward: float, terminated: bool, truncated: bool, lives: int):
        self.score += reward
        self.frames += FRAME_SKIP
        lost_life = self.training and not (terminated or truncated) and 0 < lives < self.lives
        self.lives = lives
        self.lost_life = lost_life
        self._last_obs = obs
        info = {}
        if terminated or truncated:
            info[EPISODE_KEY] = {"r": self.score, "l": self.frames, "s": None}
        if self.training:
            reward = float(np.sign(reward))
        return obs, reward, terminated or lost_life, truncated, info

    def render(self) -> np.ndarray:
        return self.pool.render(np.array([self.j], dtype=np.int32))[0]

    def close(self) -> None:
        pass  # the pool is closed by its owner
