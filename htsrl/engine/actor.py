"""Actors: observation in, action, log-probability and value out, for one inference group at a time.

Any actor serves any group whose observation is ready. The parameters are views into the shared
``params`` array, written only at barriers, so an actor never copies weights.
"""

from __future__ import annotations

import time

import torch

from htsrl.engine.channels import STOP, Channel, decode_task
from htsrl.engine.shm import STAT, RolloutBuffers
from htsrl.engine.streams import sample
from htsrl.nn import bind_params, build_model


class Policy:
    """Inference with the published parameters; shared by actors, the lock-step loop and serial mode."""

    def __init__(self, obs_shape, num_actions: int, bufs: RolloutBuffers):
        self.bufs = bufs
        self.model = build_model(obs_shape, num_actions)
        bind_params(self.model, bufs.params_tensor())
        self.model.eval()

    @torch.inference_mode()
    def act(self, b: int, t: int, envs: slice) -> None:
        B = self.bufs
        logits, value = self.model(torch.from_numpy(B.obs[b, t, envs]))
        actions, logp = sample(logits, torch.from_numpy(B.uniforms[b, t, envs]))
        B.actions[b, t, envs] = actions.numpy()
        B.logp[b, t, envs] = logp.numpy()
        B.value[b, t, envs] = value.numpy()
        B.version[b, t, envs] = B.params_version[0]


def actor_loop(stat_row: int, policy: Policy, ready: Channel, executor_inboxes: list[Channel],
               group_owner: list[int], envs_per_group: int) -> None:
    stats = policy.bufs.stats[stat_row]
    num_groups = len(group_owner)
    while True:
        t0 = time.perf_counter()
        msg = ready.get()
        t1 = time.perf_counter()
        if msg == STOP:
            return
        t, b, g = decode_task(msg, num_groups)
        policy.act(b, t, slice(g * envs_per_group, (g + 1) * envs_per_group))
        t2 = time.perf_counter()
        executor_inboxes[group_owner[g]].put(g)
        t3 = time.perf_counter()
        stats[STAT["wait_s"]] += t1 - t0
        stats[STAT["infer_s"]] += t2 - t1
        stats[STAT["ipc_s"]] += t3 - t2
        stats[STAT["cpu_s"]] = time.process_time()
