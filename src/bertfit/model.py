"""BERT in plain PyTorch: a config, one module per idea, and thin task heads over one encoder.

Numerically this is the BERT of the paper and of the original checkpoints (post-norm blocks,
erf GELU, the config's LayerNorm epsilon). The families built on it (DistilBERT, RoBERTa, ELECTRA,
DeBERTa) differ from it in a few parts, which the config picks: no token types, positions numbered after the
padding id, narrower embeddings projected up, a sentence head with its own dense layer, one block's weights
shared by every layer (ALBERT's, with GELU's tanh approximation), and DeBERTa's
disentangled attention over relative positions (`disentangled.py`); ModernBERT picks more (pre-norm blocks
with a final norm, rotary positions, GeGLU, no biases, sliding-window attention in most layers:
`model_parts`); which family uses which is one table (`checkpoints.families`). Attention goes through
`scaled_dot_product_attention` so PyTorch picks its fused kernel for the hardware, except for short
sequences on CPU, where plain matmul-softmax-matmul is faster (`explicit_attention`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import disentangled, step_levers
from .errors import ConfigError
from .model_parts import geglu, layer_inputs, rotate


@dataclass
class BertConfig:
    """Sizes and constants of a BERT encoder; field names follow Hugging Face's config.json."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None  # None: the hidden dropout, as in BERT
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # The parts, BERT's by default; another family picks its own (checkpoints/families.py). type_vocab_size 0:
    # no token types (DistilBERT).
    family: str = "bert"  # whose weight names, heads and config.json these are
    position_offset: int = 0  # the first position's row in the position table (RoBERTa's: pad_token_id + 1)
    embedding_size: int | None = None  # ELECTRA: embeddings this wide, projected up to hidden_size
    sentence_head: str = "pooler"  # "pooler": BERT's tanh pooler in the encoder; "dense": the head's own on <s>
    sentence_activation: str = "tanh"  # of the "dense" sentence head: tanh, relu (DistilBERT) or gelu (ELECTRA)
    hidden_act: str = "gelu"  # of the blocks' MLP and the LM head: gelu (erf); ALBERT's gelu_new (tanh form) or relu
    shared_layers: bool = False  # ALBERT: one block's weights, run num_hidden_layers times
    # DeBERTa-v2/v3's parts (disentangled.py), none of them BERT's. Field names follow its config.json.
    relative_attention: bool = False  # disentangled attention over relative positions
    pos_att_type: tuple[str, ...] = ()  # its position terms: "c2p" (content to position), "p2c" (the reverse)
    position_buckets: int = -1  # distances in log buckets, this many each way (-1: exact distances)
    max_relative_positions: int = -1  # the farthest distance told apart (-1: max_position_embeddings)
    share_att_key: bool = False  # positions projected by the layer's own query and key projections (v3)
    norm_rel_ebd: str = "none"  # "layer_norm": the relative embeddings pass a LayerNorm
    position_biased_input: bool = True  # absolute position embeddings (v3 has none)
    project_then_norm: bool = False  # embeddings projected up (no bias) before their LayerNorm, not after it
    pooler_dropout: float | None = None  # the dense sentence head's dropout on the first token (None: the classifier's)
    # ModernBERT's parts (model_parts.py). sentence_head "prediction": dense, activation, norm before the classifier
    # of every head (ModernBERT's prediction head, whose activation is also its LM head's).
    pre_norm: bool = False  # x + attention(norm(x)), with an embedding norm (the first block has none) and a final one
    positions: str = "absolute"  # "absolute": a table in the embeddings; "rotary": angles in attention
    mlp: str = "gelu"  # "geglu": the intermediate layer twice as wide, GELU of one half times the other
    norm_bias: bool = True
    attention_bias: bool = True
    mlp_bias: bool = True
    classifier_bias: bool = True  # of the prediction head's and the LM head's dense layer
    decoder_bias: bool = True  # the LM head's output bias
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    local_attention: int = 0  # a local layer's window (half either side); 0: every layer global
    global_attn_every_n_layers: int = 1  # with local_attention: layers 0, n, 2n, ... global, the others local
    classifier_pooling: str = "cls"  # the "prediction" sentence head's input: the first token, or the tokens' "mean"
    # The heads' dropout where a family's differs from BERT's: the tagger's rate ("classifier": the classifier's;
    # "hidden": hidden_dropout_prob, as DistilBERT's and DeBERTa's taggers have it), and one before the span head
    # (DistilBERT's qa_dropout; None: none, as in BERT)
    tagger_dropout: str = "classifier"
    qa_dropout: float | None = None

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if self.sentence_head not in ("pooler", "dense", "prediction") or self.sentence_activation not in ACTIVATIONS:
            raise ConfigError(f"sentence_head must be pooler, dense or prediction and sentence_activation one of "
                              f"{', '.join(ACTIVATIONS)}, not {self.sentence_head!r} and {self.sentence_activation!r}")
        if isinstance(self.pos_att_type, str):  # config.json may write "p2c|c2p"
            self.pos_att_type = [t.strip() for t in self.pos_att_type.lower().split("|") if t.strip()]
        self.pos_att_type = tuple(dict.fromkeys(self.pos_att_type or ()))  # each term counts once, as in DeBERTa
        if any(t not in disentangled.TERMS for t in self.pos_att_type) or \
                (self.pos_att_type and not self.relative_attention):
            raise ConfigError(f"pos_att_type must name c2p and/or p2c, with relative_attention, "
                              f"not {self.pos_att_type!r}")
        if any(n.strip() not in ("none", "layer_norm") for n in self.norm_rel_ebd.lower().split("|")):
            raise ConfigError(f"norm_rel_ebd must be none or layer_norm, not {self.norm_rel_ebd!r}")
        choices = {"positions": ("absolute", "rotary"), "mlp": ("gelu", "geglu"), "classifier_pooling": ("cls", "mean"),
                   "hidden_act": ("gelu", "gelu_new", "relu"), "tagger_dropout": ("classifier", "hidden")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.shared_layers and self.pre_norm:  # a pre-norm model's first block differs from the others
            raise ConfigError("shared_layers (one block for every layer) is built for post-norm blocks, not pre_norm")
        if self.local_attention < 0 or self.global_attn_every_n_layers < 1:
            raise ConfigError(f"local_attention must be at least 0 and global_attn_every_n_layers at least 1, not "
                              f"{self.local_attention} and {self.global_attn_every_n_layers}")

    @property
    def max_length(self) -> int:
        """The longest sequence the position table holds."""
        return self.max_position_embeddings - self.position_offset


# BERT's GELU is the exact erf form; ALBERT's (transformers' "gelu_new") the tanh approximation
ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu,
               "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


class FastDropout(nn.Dropout):
    """nn.Dropout with a mask that is cheaper to draw on CPU.

    On CPU `bernoulli_` is most of a dropout's cost (bench/levers.py measures both). Here each element's keep-or-drop comes from 16 random bits,
    four to one 64-bit draw of the same seeded generator, so the drop probability is rounded to a
    multiple of 1/65536 (0.1 becomes 0.100006). GPUs keep PyTorch's own kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.draws(x):
            return super().forward(x)
        return torch.where(self.drop_mask(x), 0.0, x) * (1.0 / (1.0 - self.p))

    def add_to(self, residual: Tensor, x: Tensor) -> Tensor:
        """residual + self(x); with the `dropout_add` lever, one addcmul with the keep mask (the same draws)."""
        if not (self.draws(x) and step_levers.ON["dropout_add"]):
            return residual + self(x)
        keep = torch.where(self.drop_mask(x), x.new_zeros(()), x.new_full((), 1.0 / (1.0 - self.p)))
        return torch.addcmul(residual, x, keep)

    def draws(self, x: Tensor) -> bool:
        """Whether this call draws a mask of its own (training on CPU, 0 < p < 1)."""
        return self.training and 0 < self.p < 1 and x.device.type == "cpu"

    def drop_mask(self, x: Tensor) -> Tensor:
        """True where an element of x is dropped."""
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
        return words.view(torch.int16)[:n].view(x.shape) < -(2**15) + round(self.p * 2**16)


class BertEmbeddings(nn.Module):
    """Word + position (+ token-type) embeddings, then LayerNorm and dropout (then, ELECTRA's, a projection up
    to the hidden size)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.position_offset = config.position_offset
        self.word_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        # rotary positions (ModernBERT) are angles in attention, and DeBERTa-v3's relative ones too: no table here
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width) \
            if config.positions == "absolute" and config.position_biased_input else None
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size else None
        # DeBERTa projects first (without a bias) and normalises at the hidden size; ELECTRA the other way round
        self.project_first = config.project_then_norm
        self.norm = nn.LayerNorm(config.hidden_size if self.project_first else width, eps=config.layer_norm_eps,
                                 bias=config.norm_bias)
        self.dropout = FastDropout(config.hidden_dropout_prob)
        self.project = nn.Linear(width, config.hidden_size, bias=not self.project_first) \
            if width != config.hidden_size else None

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, packing: Packing | None = None) -> Tensor:
        """(batch, length, hidden); with `packing`, (real tokens, hidden) for the real tokens alone."""
        if packing is not None:
            input_ids, token_type_ids = input_ids.flatten()[packing.index], token_type_ids.flatten()[packing.index]
            positions = packing.index % packing.length
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # RoBERTa numbers a sequence's tokens from pad_token_id + 1 on (padding sits on the right, so this is
        # its count of the real tokens before each one)
        x = self.word_embeddings(input_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(positions + self.position_offset)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(token_type_ids)
        if self.project_first:
            # DeBERTa also zeroes the padding's embeddings here, which no real token reads without its
            # convolution (refused by checkpoints.hf): attention masks padding as keys
            return self.dropout(self.norm(self.project(x) if self.project is not None else x))
        x = self.dropout(self.norm(x))
        return self.project(x) if self.project is not None else x


class Packing:
    """Where a batch's real tokens sit among its (batch x length) positions, for the packed path.

    Everything in a block but attention works token by token, so on a padded batch the projections,
    the MLP, LayerNorm and GELU can run on the real tokens alone, packed one after another, and only
    attention sees the (batch, length) layout: `pad` before it and `unpad` after. In a server's
    batch of short sentences of mixed lengths about half the positions are padding (SST-2's dev
    sentences in random groups of 16: 57% real), which the padded path multiplies through every
    matrix product. The outputs at real positions are the padded path's; at padding they are zeros
    (the padded path leaves numbers there that nothing reads).
    """

    def __init__(self, mask: Tensor):
        self.batch, self.length = mask.shape
        self.index = mask.flatten().nonzero().squeeze(1)  # the real tokens' flat positions, row by row
        self.counts = mask.sum(1)
        self.first = torch.cumsum(self.counts, 0) - self.counts  # each sequence's first token in the packed order
        self._groups: list[AttentionGroup] | None = None

    @classmethod
    def worth_it(cls, mask: Tensor) -> Packing | None:
        """A Packing when the padding is worth removing here (CPU, real share under PACK_BELOW by grad
        mode; every sequence starting with a real token, as the tokenizers pad on the right), else None."""
        below = PACK_BELOW[torch.is_grad_enabled()]
        if mask.device.type != "cpu" or not below or mask.shape[1] < 2 or torch.jit.is_tracing() \
                or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return None  # a traced or compiled graph must not bake in one batch's layout
        if int(mask.sum()) > below * mask.numel() or not bool(mask[:, 0].all()):
            return None
        return cls(mask)

    def pad(self, packed: Tensor) -> Tensor:
        """(real tokens, C) -> (batch, length, C), zeros at the padding."""
        out = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        return out.index_copy(0, self.index, packed).view(self.batch, self.length, -1)

    def unpad(self, padded: Tensor) -> Tensor:
        """(batch, length, C) -> (real tokens, C)."""
        return padded.reshape(self.batch * self.length, -1).index_select(0, self.index)

    def groups(self) -> list[AttentionGroup]:
        """The batch's sequences in groups of similar lengths, longest first, each padded to its own longest
        alone: a server's pass of one 256-token text among fifteen short ones pads them all to 256 in attention,
        sixteen times the 256 x 256 scores that one text needs. A sequence joins the group of the longer ones
        while it is at least GROUP_SHARE of their width. Made once per batch, for every layer."""
        if self._groups is None:
            counts = self.counts.tolist()
            order = sorted(range(self.batch), key=lambda row: -counts[row])
            runs, width = [], 0
            for row in order:
                if not runs or counts[row] < GROUP_SHARE * width:
                    runs.append([])
                    width = counts[row]
                runs[-1].append(row)
            self._groups = [AttentionGroup.of(rows, self.counts, self.first) for rows in runs]
        return self._groups


@dataclasses.dataclass
class AttentionGroup:
    """Some sequences of a packed batch laid out (rows, width) for attention: `packed`, their tokens' places
    in the packed order; `padded`, the same tokens' places in the (rows x width) layout; `mask`, the
    key-padding mask of that layout (None when every row is as long as the width)."""

    rows: int
    width: int
    packed: Tensor
    padded: Tensor
    mask: Tensor | None

    @classmethod
    def of(cls, rows: list[int], counts: Tensor, first: Tensor) -> AttentionGroup:
        rows_t = torch.tensor(rows, device=counts.device)
        lengths = counts[rows_t]
        width = int(lengths[0])
        step = torch.arange(int(lengths.sum()), device=counts.device) \
            - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)  # each token's place in its row
        packed = torch.repeat_interleave(first[rows_t], lengths) + step
        padded = torch.repeat_interleave(torch.arange(len(rows), device=counts.device) * width, lengths) + step
        mask = None if bool((lengths == width).all()) else \
            (torch.arange(width, device=counts.device)[None] < lengths[:, None])[:, None, None, :]
        return cls(len(rows), width, packed, padded, mask)


def first_tokens(x: Tensor, packing: Packing | None) -> Tensor:
    """Each sequence's first position, (batch, 1, hidden), from a padded x or (with `packing`) a packed one."""
    return x[packing.first].unsqueeze(1) if packing is not None else x[:, :1]


# The packed path runs when real tokens are at most this share of a CPU batch's positions (0: never),
# by whether gradients are on. It saves the padding's share of the work for two copies of the
# activations per block: on this repository's avx2 figures (bench/levers.py) 1.44x on a server's
# passes of SST-2 sentences (58% real), 2.23x on a training step of ungrouped SST-2 batches (32%
# real), and nothing either way on length-grouped ones (97% real), where it does not run.
PACK_BELOW = {False: 0.9, True: 0.9}
# Inference on a packed batch attends in groups of sequences of similar lengths (Packing.groups): a sequence
# joins a group while it is at least this share of the group's longest, so its row wastes under a third of
# the group's scores on padding.
GROUP_SHARE = 0.75


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.dropout_p = config.attention_probs_dropout_prob
        self.disentangled = disentangled.DisentangledAttention(config) if config.relative_attention else None

    def forward(self, x: Tensor, attn_mask: Tensor | None, first_only: bool = False,
                packing: Packing | None = None, relative: tuple[Tensor, Tensor] | None = None,
                rotary: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Attend over all of x; with `first_only`, only the first position asks (its output alone comes back,
        (batch, 1, hidden)). With `packing`, x holds the real tokens alone (tokens, hidden), and so does the output
        unless `first_only`. `relative`: the model's relative positions, for disentangled attention (DeBERTa);
        `rotary`: cos and sin of each position's angles, turning queries and keys (ModernBERT)."""
        hidden = x.shape[-1]
        if packing is not None and not first_only and relative is None and rotary is None \
                and (attn_mask is None or attn_mask.shape[-2] == 1) and not torch.is_grad_enabled():
            return self.out(self._attend_in_groups(x, packing))
        batch, length = (packing.batch, packing.length) if packing is not None else x.shape[:2]
        heads, head_dim = self.num_heads, hidden // self.num_heads
        layout = packing.pad if packing is not None else (lambda t: t)  # to (batch, length, ...) for attention
        if first_only:
            # keys and values for every token, a query for the first alone
            weight, bias = self.qkv.weight, self.qkv.bias
            q_bias, kv_bias = (bias[:hidden], bias[hidden:]) if bias is not None else (None, None)
            q = F.linear(first_tokens(x, packing), weight[:hidden], q_bias)
            q = q.view(batch, 1, heads, head_dim).transpose(1, 2)
            k, v = split_heads(layout(F.linear(x, weight[hidden:], kv_bias)), batch, length, 2, heads)
            if attn_mask is not None and attn_mask.shape[-2] > 1:  # a window mask: the first query's row
                attn_mask = attn_mask[..., :1, :]
        else:
            q, k, v = split_heads(layout(self.qkv(x)), batch, length, 3, heads)
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        if relative is None:
            y = self._attend(q, k, v, attn_mask)
        else:
            y = self.disentangled(q, k, v, attn_mask, relative, self.qkv, self.dropout_p if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, q.shape[2], hidden)
        return self.out(packing.unpad(y) if packing is not None and not first_only else y)

    def _attend_in_groups(self, x: Tensor, packing: Packing) -> Tensor:
        """Attention over packed tokens (tokens, hidden), each group of similar lengths padded to its own longest:
        the padded path's numbers, without the batch's padding. Global key-padding attention alone: window masks,
        relative and rotary positions keep the padded layout."""
        hidden = x.shape[-1]
        heads = self.num_heads
        qkv = self.qkv(x)
        y = qkv.new_empty(x.shape[0], hidden)
        for group in packing.groups():
            rows = qkv.new_zeros(group.rows * group.width, 3 * hidden).index_copy_(
                0, group.padded, qkv.index_select(0, group.packed))
            q, k, v = rows.view(group.rows, group.width, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            attended = self._attend(q, k, v, group.mask).transpose(1, 2).reshape(group.rows * group.width, hidden)
            y.index_copy_(0, group.packed, attended.index_select(0, group.padded))
        return y

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        dropout_p = self.dropout_p if self.training else 0.0
        if q.device.type == "cpu" and k.shape[2] <= EXPLICIT_ATTENTION_MAX_LENGTH[torch.is_grad_enabled()]:
            return explicit_attention(q, k, v, attn_mask, dropout_p)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def split_heads(projected: Tensor, batch: int, length: int, parts: int, heads: int) -> tuple[Tensor, ...]:
    """(batch, length, parts * hidden) -> `parts` views (batch, heads, length, head_dim): queries, keys, values.

    Both ways give the same views; they differ in the backward. Split along the parts' own axis
    (`qkv_unbind`), the gradients are stacked straight into the projection's layout; split off a
    permuted view, they are stacked apart and then copied into it."""
    split = projected.view(batch, length, parts, heads, -1)
    if step_levers.ON["qkv_unbind"]:
        return tuple(part.transpose(1, 2) for part in split.unbind(2))
    return tuple(split.permute(2, 0, 3, 1, 4))


# On CPU, SDPA's fused (flash) kernel has a large cost per (sequence, head), in its backward above
# all, so on short sequences the plain matmul-softmax-matmul below is faster, up to these lengths
# (bench/attention_speed.py measures the crossing). Longer sequences and GPUs keep the fused kernel.
EXPLICIT_ATTENTION_MAX_LENGTH = {True: 128, False: 48}  # by whether gradients are on


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) v as three plain ops, as SDPA's math path computes it: the scores
    in q's dtype (bf16 under autocast), the softmax in float32."""
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2))
    if attn_mask is None:
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32)) * scale
    else:
        # the mask as 0 / -inf in float32, and one op for scale, mask and the cast of the scores to float32
        bias = torch.zeros(attn_mask.shape, dtype=torch.promote_types(scores.dtype, torch.float32),
                           device=scores.device).masked_fill_(~attn_mask, float("-inf"))
        scores = torch.add(bias, scores, alpha=scale)
    probs = F.dropout(torch.softmax(scores, dim=-1), dropout_p, training=dropout_p > 0)
    return torch.matmul(probs.to(v.dtype), v)


def set_attention_dropout(model: nn.Module, p: float) -> None:
    """Dropout on attention probabilities for training; the saved config keeps the checkpoint's value."""
    for module in model.modules():
        if isinstance(module, BertSelfAttention):
            module.dropout_p = p


class BertLayer(nn.Module):
    """One post-norm transformer block: x = norm(x + attention(x)); x = norm(x + mlp(x)). Or (`pre_norm`) a
    pre-norm one: x = x + attention(norm(x)); x = x + mlp(norm(x)), where the first block's attention reads the
    embedding norm's output as it is."""

    def __init__(self, config: BertConfig, index: int = 0):
        super().__init__()
        width, eps, bias = config.hidden_size, config.layer_norm_eps, config.norm_bias
        self.pre_norm = config.pre_norm
        self.attention = BertSelfAttention(config)
        first_of_pre_norm = config.pre_norm and index == 0
        self.attention_norm = nn.Identity() if first_of_pre_norm else nn.LayerNorm(width, eps=eps, bias=bias)
        wide = 2 if config.mlp == "geglu" else 1
        self.intermediate = nn.Linear(width, wide * config.intermediate_size, bias=config.mlp_bias)
        self.activation = geglu if config.mlp == "geglu" else ACTIVATIONS[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, width, bias=config.mlp_bias)
        self.output_norm = nn.LayerNorm(width, eps=eps, bias=bias)
        self.dropout = FastDropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, attn_mask: Tensor | None, first_only: bool = False,
                packing: Packing | None = None, relative: tuple[Tensor, Tensor] | None = None,
                rotary: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The block's output for every position, or (`first_only`) for the first alone, at a fraction of the cost;
        with `packing`, for the real tokens alone (see Packing)."""
        if self.pre_norm:
            attended = self.attention(self.attention_norm(x), attn_mask, first_only, packing, relative, rotary)
            x = self.dropout.add_to(first_tokens(x, packing) if first_only else x, attended)
            return self.dropout.add_to(x, self.mlp(self.output_norm(x)))
        attended = self.attention(x, attn_mask, first_only, packing, relative, rotary)
        x = self.attention_norm(self.dropout.add_to(first_tokens(x, packing) if first_only else x, attended))
        return self.output_norm(self.dropout.add_to(x, self.mlp(x)))

    def mlp(self, x: Tensor) -> Tensor:
        return self.output(self.activation(self.intermediate(x)))


class BertPooler(nn.Module):
    """tanh(dense(hidden state of [CLS])): the sentence vector the classification head reads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output: Tensor) -> Tensor:
        return torch.tanh(self.dense(sequence_output[:, 0]))


class BertModel(nn.Module):
    """The encoder: embeddings, N blocks, pooler. Returns (sequence_output, pooled_output).

    `pooler=False` (the span head's, as in transformers), or a family whose sentence head is its own
    (`sentence_head="dense"`): no pooler, and pooled_output is None. With `shared_layers` (ALBERT) `layers` holds
    one block, run num_hidden_layers times: one set of weights, saved and optimised once.
    """

    def __init__(self, config: BertConfig, pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        blocks = 1 if config.shared_layers else config.num_hidden_layers
        self.layers = nn.ModuleList(BertLayer(config, i) for i in range(blocks))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.norm_bias) \
            if config.pre_norm else None
        self.pooler = BertPooler(config) if pooler and config.sentence_head == "pooler" else None
        self.relative = disentangled.RelativePositions(config) if config.relative_attention else None

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, first_token_only: bool = False) -> tuple[Tensor, Tensor | None]:
        """`first_token_only`: the pooled output is all the caller needs, so the last block computes the
        [CLS] position alone (keys and values still come from every token); sequence_output is then
        (batch, 1, hidden). The results are the same, and a sentence classifier skips about 14% of a
        6-layer encoder's matmul work."""
        if input_ids.shape[1] > self.config.max_length:
            raise ConfigError(
                f"sequence of {input_ids.shape[1]} tokens is longer than the model's "
                f"{self.config.max_length} positions; lower --max-seq-length")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = input_ids != self.config.pad_token_id
        # A key-padding mask broadcast over heads and queries; True means "may attend".
        # With no padding in the batch, no mask at all lets SDPA take its fastest kernel.
        attn_mask = None if bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]
        depth = self.config.num_hidden_layers
        packing = Packing.worth_it(attention_mask.bool()) if attn_mask is not None and depth else None
        x = self.embeddings(input_ids, token_type_ids, packing)
        relative = self.relative(input_ids.shape[1], input_ids.device) if self.relative is not None else None
        inputs = layer_inputs(self.config, attention_mask, attn_mask,
                              self.config.hidden_size // self.config.num_attention_heads)
        for i, (mask, rotary) in enumerate(inputs):
            layer = self.layers[i % len(self.layers)]  # the one block of shared_layers, else the i-th
            x = layer(x, mask, first_only=first_token_only and i == depth - 1, packing=packing,
                      relative=relative, rotary=rotary)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if packing is not None and not first_token_only:
            x = packing.pad(x)
        return x, self.pooler(x) if self.pooler is not None else None


class PredictionHead(nn.Module):
    """dense, activation, LayerNorm: ModernBERT's head before each classifier, and every family's LM head before
    the word embeddings (ELECTRA's maps down to its narrower embeddings)."""

    def __init__(self, config: BertConfig, width: int | None = None, activation: str | None = None):
        super().__init__()
        width = width or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width, bias=config.classifier_bias)
        self.activation = ACTIVATIONS[activation or config.sentence_activation]
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps, bias=config.norm_bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.norm(self.activation(self.dense(hidden)))


def _prediction_head(config: BertConfig) -> PredictionHead | None:
    return PredictionHead(config) if config.sentence_head == "prediction" else None


def _classifier_dropout(config: BertConfig) -> FastDropout:
    p = config.classifier_dropout
    return FastDropout(p if p is not None else config.hidden_dropout_prob)


class BertForSequenceClassification(nn.Module):
    """Linear classifier on the first token's sentence vector; one output means regression (STS-B).

    The sentence vector is BERT's pooled [CLS] vector, or (`sentence_head="dense"`) the head's own dense layer
    and activation on the first token: RoBERTa's dense-tanh, DistilBERT's pre-classifier and ReLU, ELECTRA's
    dense-GELU, DeBERTa's context pooler. Dropout comes before the dense layer and after it, as RoBERTa and ELECTRA
    have it (DistilBERT's comes after it alone; DeBERTa's before it is its pooler_dropout). ModernBERT's
    (`"prediction"`) is its prediction head on the first token or on the mean of the real tokens
    (`classifier_pooling`), dropout after it alone.
    """

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.dropout = _classifier_dropout(config)
        # DeBERTa's context pooler has a dropout of its own before its dense layer
        self.pre_dropout = FastDropout(config.pooler_dropout) if config.pooler_dropout is not None else self.dropout
        self.pre_classifier = nn.Linear(config.hidden_size, config.hidden_size) \
            if config.sentence_head == "dense" else None
        self.activation = ACTIVATIONS[config.sentence_activation]
        self.head = _prediction_head(config)
        self.mean_pooling = config.classifier_pooling == "mean" and self.head is not None
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        sequence, pooled = self.bert(input_ids, token_type_ids, attention_mask, first_token_only=not self.mean_pooling)
        if self.pre_classifier is not None:
            pooled = self.activation(self.pre_classifier(self.pre_dropout(sequence[:, 0])))
        elif self.head is not None:
            pooled = self.head(mean_of_real_tokens(sequence, attention_mask, input_ids, self.bert.config)
                               if self.mean_pooling else sequence[:, 0])
        return self.classifier(self.dropout(pooled))


def mean_of_real_tokens(sequence: Tensor, attention_mask: Tensor | None, input_ids: Tensor,
                        config: BertConfig) -> Tensor:
    """(batch, hidden): the mean of each sequence's hidden states over its real tokens."""
    real = (attention_mask if attention_mask is not None else input_ids != config.pad_token_id).to(sequence.dtype)
    return (sequence * real.unsqueeze(-1)).sum(1) / real.sum(1, keepdim=True)


class BertForQuestionAnswering(nn.Module):
    """Start and end logits for every token: the span head of extractive QA."""

    def __init__(self, config: BertConfig):
        super().__init__()
        # no pooler: nothing here reads it, and under DistributedDataParallel a parameter no loss reaches
        # would make every step wait for its gradient
        self.bert = BertModel(config, pooler=False)
        self.head = _prediction_head(config)  # ModernBERT's, then dropout
        self.dropout = _classifier_dropout(config) if self.head is not None else \
            FastDropout(config.qa_dropout) if config.qa_dropout is not None else None  # DistilBERT's
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        sequence, _ = self.bert(input_ids, token_type_ids, attention_mask)
        if self.head is not None:
            sequence = self.head(sequence)
        if self.dropout is not None:
            sequence = self.dropout(sequence)
        start_logits, end_logits = self.qa_outputs(sequence).unbind(dim=-1)
        return start_logits, end_logits


class BertForTokenClassification(nn.Module):
    """Label logits for every token (batch, length, labels): the tagger of NER and part-of-speech tagging."""

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        self.num_labels = num_labels
        self.bert = BertModel(config, pooler=False)  # nothing reads a pooler here (as in transformers)
        self.dropout = _classifier_dropout(config) if config.tagger_dropout == "classifier" else \
            FastDropout(config.hidden_dropout_prob)
        self.head = _prediction_head(config)  # ModernBERT's
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        sequence, _ = self.bert(input_ids, token_type_ids, attention_mask)
        if self.head is not None:
            sequence = self.head(sequence)
        return self.classifier(self.dropout(sequence))


class BertLMHead(PredictionHead):
    """Scores over the vocabulary for hidden states: dense, GELU, LayerNorm, then the word embedding
    matrix (tied, as in the paper) plus an output bias of its own. (ELECTRA's and ALBERT's dense maps down to their
    narrower embeddings; ALBERT's activation is its blocks' gelu_new; ModernBERT's is its prediction head's, its
    output bias optional.)

    The decoder weight is the encoder's embedding Parameter itself, passed in at each call rather than
    held here, so the state dict, the optimizer and checkpoints see the one tensor once.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config, config.embedding_size or config.hidden_size,
                         None if config.sentence_head == "prediction" else config.hidden_act)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size)) if config.decoder_bias else None

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        return F.linear(super().forward(hidden), word_embeddings, self.bias)


def _selected(sequence: Tensor, positions: Tensor | None) -> Tensor:
    """The hidden states the LM head scores: all of them, or (n_selected, hidden) where `positions` is True.

    The vocabulary projection is the costliest matmul of a small model (30k x hidden per token), and
    pretraining scores only the ~15% of tokens that were masked.
    """
    return sequence if positions is None else sequence[positions]


class BertForMaskedLM(nn.Module):
    """Masked-token logits: (batch, length, vocab), or (n_selected, vocab) for the given `positions`."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config, pooler=False)  # nothing reads a pooler here (as in transformers)
        self.cls = BertLMHead(config)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        sequence, _ = self.bert(input_ids, token_type_ids, attention_mask)
        return self.cls(_selected(sequence, positions), self.bert.embeddings.word_embeddings.weight)


class BertForPreTraining(nn.Module):
    """BERT's two pretraining tasks: masked-token logits as BertForMaskedLM's, and next-sentence logits
    (batch, 2) on the pooled [CLS] vector (0: b follows a, 1: b is a random sentence)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config)
        self.cls = BertLMHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        sequence, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        mlm = self.cls(_selected(sequence, positions), self.bert.embeddings.word_embeddings.weight)
        return mlm, self.seq_relationship(pooled)


# Sizes to pretrain from scratch: the tutorial's BERT (BERT-base's shape), and Google's BERT miniatures
# (Turc et al. 2019: L layers / H hidden, H/64 heads, 4H feed-forward). pretrain_config sets the vocabulary.
PRETRAIN_SIZES: dict[str, dict] = {
    "tutorial": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                     vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1,
                     layer_norm_eps=1e-5),  # nn.LayerNorm's default, which the tutorial keeps; its .pth implies it
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
}


def pretrain_config(size: str, vocab_size: int, pad_token_id: int, max_position_embeddings: int = 512,
                    **parts) -> BertConfig:
    """The BertConfig of a PRETRAIN_SIZES preset, for a tokenizer of `vocab_size` tokens; `parts`: the fields a
    family picks (its name, position offset, sentence head, ...), BERT's without them."""
    if size not in PRETRAIN_SIZES:
        raise ConfigError(f"unknown model size {size!r}; known sizes: {', '.join(PRETRAIN_SIZES)}")
    return BertConfig(**{**PRETRAIN_SIZES[size], "vocab_size": vocab_size, "pad_token_id": pad_token_id,
                         "max_position_embeddings": max_position_embeddings, **parts})


def init_weights(module: nn.Module, config: BertConfig) -> None:
    """BERT's initialisation for layers a checkpoint does not provide (new heads, or all of a model
    pretrained from scratch), as transformers does it."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=config.initializer_range)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                # the [PAD] row starts at zero, as nn.Embedding's own init leaves it; the lookup never
                # updates it, though a tied LM decoder does (pushing the score of [PAD] down)
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, BertLMHead) and m.bias is not None:
            nn.init.zeros_(m.bias)  # its decoder is the word embeddings, initialised above


def flops_per_token(config: BertConfig, seq_len: float) -> float:
    """Forward matmul FLOPs per token of the encoder (x3 for a training step)."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    mlp = 3 if config.mlp == "geglu" else 2  # GeGLU's intermediate matrix is twice as tall
    dense = 2 * (4 * h * h + mlp * h * i)  # qkv + out projections, the MLP's matrices
    attention = 2 * 2 * seq_len * h  # scores and weighted sum
    return n * (dense + attention)

