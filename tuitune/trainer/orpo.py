"""TRL's ORPO trainer scoring its sequences through the fused LM head instead of full logits.

TRL's ORPOTrainer (trl.experimental.orpo) builds the (batch, seq, vocab) logits and takes log-softmaxes
of them. ORPO only needs per-token log-probabilities: the chosen rows' mean NLL over prompt and reply,
and each reply's mean log-probability. `model(..., labels=..., fused_lm_head=True)` gives exactly those,
chunk by chunk, from TRL's fused head (installed here for the stock path) or from tuitune's fused
linear cross-entropy once the kernels are patched in. One forward pass per batch, as TRL's.
"""

from __future__ import annotations

import torch
from trl.experimental.orpo import ORPOTrainer
from trl.trainer.utils import add_fused_lm_head


class FusedHeadORPOTrainer(ORPOTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        add_fused_lm_head(base, outputs=("log_probs", "mean_logits"))

    def concatenated_forward(self, model, batch):
        if self.is_encoder_decoder:
            return super().concatenated_forward(model, batch)
        joined = self.concatenated_inputs(batch, is_encoder_decoder=False, padding_value=self.padding_value,
                                          device=self.accelerator.device)
        n_chosen = batch["chosen_labels"].shape[0]
        ids, attention = joined["concatenated_input_ids"], joined["concatenated_attention_mask"]
        every_token = ids.masked_fill(attention == 0, -100)  # ORPO's NLL covers prompt and reply
        kwargs = {"output_router_logits": True} if self.aux_loss_enabled else {}
        outputs = model(input_ids=ids, attention_mask=attention, labels=every_token, fused_lm_head=True,
                        use_cache=False, **kwargs)
        seq = ids.shape[1] - 1
        log_probs = outputs.log_probs[:, -seq:]
        token_mask = (every_token[:, 1:] != -100).to(log_probs.dtype)
        reply_mask = (joined["concatenated_labels"][:, 1:] != -100).to(log_probs.dtype)
        chosen_nll = -(log_probs[:n_chosen] * token_mask[:n_chosen]).sum() / token_mask[:n_chosen].sum().clamp(min=1)
        mean_logps = (log_probs * reply_mask).sum(-1) / reply_mask.sum(-1).clamp(min=1)
        chosen_logits, rejected_logits = _mean_logits(outputs, reply_mask, n_chosen)
        result = (mean_logps[:n_chosen], mean_logps[n_chosen:], chosen_logits, rejected_logits, chosen_nll)
        if self.aux_loss_enabled:
            return result + (outputs.aux_loss,)
        return result


def _mean_logits(outputs, reply_mask: torch.Tensor, n_chosen: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits/chosen and logits/rejected metrics: the mean logit over the reply tokens (0 when the head
    does not report mean logits)."""
    mean = getattr(outputs, "mean_logits", None)
    if mean is None:
        zero = reply_mask.new_zeros(())
        return zero, zero
    mean = mean[:, -reply_mask.shape[1]:].detach().float() * reply_mask

    def part(rows: slice) -> torch.Tensor:
        return mean[rows].sum() / reply_mask[rows].sum().clamp(min=1)

    return part(slice(0, n_chosen)), part(slice(n_chosen, None))
