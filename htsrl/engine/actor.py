"""Actors: observation in, action, log-probability and value out, for one inference group at a time.

Any actor serves any group whose observation is ready. On CPU the parameters are views into the current
slot of the shared ``params`` array, so an actor never copies weights; on a GPU (``--actor-device
cuda``, spawned actors) it copies each published version to the device once, runs the forward there
with deterministic kernels, and samples on CPU from the logits it brings back. In HTS and lock-step mode they are
published only at barriers. In async mode the learner publishes while actors run: it writes the other
slot and then switches, and an actor whose slot was rewritten during its forward (the slot's sequence
number moved) runs the forward again on the new current slot, so no action comes from a mix of two
parameter sets.
"""

from __future__ import annotations

import torch

from htsrl.device import deterministic_cuda
from htsrl.distributions import ActionSpec, distribution
from htsrl.engine.channels import STOP, Channel, decode_task
from htsrl.engine.clock import RoleClock
from htsrl.engine.shm import RolloutBuffers
from htsrl.nn import bind_params, build_model


class Policy:
    """Inference with the published parameters; shared by actors, the lock-step loop and serial mode."""

    def __init__(
        self,
        obs_shape,
        action_spec: ActionSpec | int,
        bufs: RolloutBuffers,
        network_options: dict,
        device: str = "cpu",
    ):
        self.bufs = bufs
        self.device = torch.device(device)
        self.model = build_model(obs_shape, action_spec, **network_options)  # the learner's network, bound below
        self.bound: object = -1  # what the model's parameters hold: a params slot (CPU), (slot, seq) (GPU)
        if self.device.type != "cpu":
            deterministic_cuda(device)
            self.model.to(self.device)
            self.on_device = torch.empty(bufs.params.shape[1], device=self.device)
            bind_params(self.model, self.on_device)
        self.model.eval()
        # --precision bf16: a bfloat16 copy of the trunk, made once per published version
        self.cast_bf16 = getattr(self.model, "bf16", False)
        self.cast_version: tuple[int, int] | None = None

    def _bind_current(self) -> tuple[int, int]:
        """View (CPU) or copy (GPU) the current params slot; returns ``(slot, its sequence number)`` as read
        before use."""
        slot = int(self.bufs.params_slot[0])
        seq = int(self.bufs.params_seq[slot])
        if self.device.type == "cpu":
            if slot != self.bound:
                bind_params(self.model, self.bufs.params_tensor(slot))
                self.bound = slot
        elif (slot, seq) != self.bound:  # a version not on the device yet: one copy per published version
            self.on_device.copy_(self.bufs.params_tensor(slot))
            self.bound = (slot, seq)
        if self.cast_bf16 and self.cast_version != (slot, seq):
            self.model.cache_bf16_trunk()
            self.cast_version = (slot, seq)
        return slot, seq

    @torch.inference_mode()
    def act(self, buf: int, t: int, envs: slice) -> None:
        """Actions, log-probabilities and values for ``envs`` at step ``t`` of buffer ``buf``, each action
        drawn from its env's uniforms (``htsrl.distributions``; Box: the unclipped sample), stamped with
        the published parameters' version. A recurrent network steps from ``hidden[t]`` and writes the
        state it used (zeroed where ``starts[t]``) back to row t and its new state to row t + 1."""
        bufs = self.bufs
        recurrent = bufs.state_size > 0
        device = self.device
        obs = torch.from_numpy(bufs.obs[buf, t, envs]).to(device)
        while True:
            slot, seq = self._bind_current()
            version = int(bufs.params_version[slot])
            if recurrent:  # from the state the env's previous step left (zeroed where an episode begins)
                state = torch.from_numpy(bufs.hidden[buf, t, envs]).to(device)
                starts = torch.from_numpy(bufs.starts[buf, t, envs]).to(device)
                outputs = self.model.step(obs, state, starts)
            else:
                outputs = self.model(obs)
            if seq % 2 == 0 and bufs.params_seq[slot] == seq:  # the slot did not change under the forward
                break
        if device.type != "cpu":
            outputs = tuple(x.cpu() for x in outputs)
        if recurrent:
            logits, value, state_in, state_out = outputs
            bufs.hidden[buf, t, envs] = state_in.numpy()
            bufs.hidden[buf, t + 1, envs] = state_out.numpy()
        else:
            logits, value = outputs
        dist = distribution(self.model.action_spec, logits)
        actions, logp = dist.sample(torch.from_numpy(bufs.uniforms[buf, t, envs]))
        bufs.actions[buf, t, envs] = actions.numpy()
        bufs.logp[buf, t, envs] = logp.numpy()
        bufs.value[buf, t, envs] = value.numpy()
        bufs.version[buf, t, envs] = version


def actor_loop(
    stat_row: int,
    policy: Policy,
    ready: Channel,
    executor_inboxes: list[Channel],
    group_owner: list[int],
    envs_per_group: int,
) -> None:
    """Serve ready groups until STOP: one forward per message, then the group back to its executor."""
    clock = RoleClock(policy.bufs.stats[stat_row])
    num_groups, last_step = len(group_owner), policy.bufs.alpha - 1
    while True:
        msg = ready.get()
        clock.lap("wait_s")
        if msg == STOP:
            clock.flush()
            return
        t, buf, g = decode_task(msg, num_groups, policy.bufs.num_slots)
        policy.act(buf, t, slice(g * envs_per_group, (g + 1) * envs_per_group))
        clock.lap("infer_s")
        executor_inboxes[group_owner[g]].put(g)
        clock.lap("ipc_s")
        if t == last_step:  # a group's last step of a window: publish this actor's seconds
            clock.flush()
