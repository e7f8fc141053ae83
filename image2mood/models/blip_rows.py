"""BLIP's greedy caption decoding, on rows that join and leave between steps (continuous batching).

:class:`Rows` holds the captions under way, one row each: its tokens, its position, and its share of the
key/value caches, allocated for ``max_new_tokens`` when it joins. A step feeds every row its last token
through the decoder's own layers (the same operations as transformers' ``generate``, without its per-token
Python) and appends the most likely next one. A row is finished at ``[SEP]`` or the cap; finished rows ride
along fed ``[PAD]``, as ``generate`` feeds them, until other rows join: then they leave.

Photos that join later sit at earlier positions than the rows under way, so each row writes its keys at its
own position and attends under a mask of the positions it has filled. Rows that all sit at one position (a
batch that joined together: :func:`greedy`) need no mask and give ``generate``'s tokens exactly.

Why: a decoding step reads every weight once, whatever the number of rows, so a step's cost grows slowly
with its rows (full-size BLIP in int8 on 2 cores: eight rows cost 1.8–2× one row's step, four about 1.45×;
bench/README.md).
Photos that arrive while others are captioned join them at the next step instead of waiting for the whole
caption, or running their own steps beside it.
"""

from __future__ import annotations

from collections.abc import Hashable
from weakref import WeakKeyDictionary

import torch
from torch.nn import functional as F

from image2mood.models.precision import stacked_linears

_STACKED: WeakKeyDictionary[torch.nn.Module, list[tuple[torch.nn.Module, torch.nn.Module]]] = WeakKeyDictionary()


class Rows:
    """Greedy decoding of BLIP's ``BlipTextLMHeadModel`` over rows that join (:meth:`join`) between steps
    (:meth:`step`); each row's key is how its tokens are handed back."""

    def __init__(self, decoder: torch.nn.Module, max_new_tokens: int) -> None:
        self.decoder, self.max_new_tokens = decoder, max_new_tokens
        config = decoder.config
        self._sep, self._pad, self._bos = config.sep_token_id, config.pad_token_id, config.bos_token_id
        self._keys: list[int] = []
        self._tokens: list[list[int]] = []  # each row's ids, [DEC] first, [SEP] last once finished
        self._done: list[bool] = []
        self._last = torch.zeros(0, dtype=torch.long)  # each row's last token ([PAD] once finished)
        self._positions = torch.zeros(0, dtype=torch.long)  # where each row's next token goes
        self._cross: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: the image's keys and values
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: the tokens' keys and values
        self._joined = 0
        self._stacked = _stacked(decoder)

    @property
    def busy(self) -> bool:
        """Whether a row is still decoding."""
        return not all(self._done)

    def join(self, features: torch.Tensor) -> list[Hashable]:
        """New rows, one for each photo's vision-tower ``features`` (photos, patches, hidden), starting at
        ``[DEC]``; their keys, in order. Finished rows leave first."""
        self._leave_finished()
        layers, rows = self.decoder.bert.encoder.layer, features.shape[0]
        attention = layers[0].attention.self
        shape = (rows, attention.num_attention_heads, self.max_new_tokens, attention.attention_head_size)
        cross = [_split(keys_values(features), layer.crossattention.self)
                 for layer, (_, keys_values) in zip(layers, self._stacked, strict=True)]
        cache = [(features.new_zeros(shape), features.new_zeros(shape)) for _ in layers]  # masked slots: finite
        self._cross = _appended(self._cross, cross)
        self._cache = _appended(self._cache, cache)
        device = features.device
        self._last = torch.cat([self._last.to(device), torch.full((rows,), self._bos, device=device)])
        self._positions = torch.cat([self._positions.to(device), torch.zeros(rows, dtype=torch.long, device=device)])
        keys = list(range(self._joined, self._joined + rows))
        self._joined += rows
        self._keys += keys
        self._tokens += [[self._bos] for _ in range(rows)]
        self._done += [False] * rows
        return keys

    def step(self) -> dict[Hashable, list[int]]:
        """One token for every row; the rows that finished with it: key → token ids."""
        embeddings, layers = self.decoder.bert.embeddings, self.decoder.bert.encoder.layer
        positions = self._positions
        first, seen = int(positions[0]), int(positions.max()) + 1
        aligned = bool((positions == first).all())
        mask = None if aligned else (torch.arange(seen, device=positions.device) <= positions[:, None])[:, None, None]
        rows = torch.arange(len(positions), device=positions.device)
        hidden = embeddings.LayerNorm(embeddings.word_embeddings(self._last[:, None])
                                      + embeddings.position_embeddings(positions[:, None]))
        for layer, (keys, values), image, (queries_keys_values, _) in zip(layers, self._cache, self._cross,
                                                                          self._stacked, strict=True):
            query, key, value = _split(queries_keys_values(hidden), layer.attention.self)
            if aligned:
                keys[:, :, first:first + 1], values[:, :, first:first + 1] = key, value
            else:
                keys[rows, :, positions], values[rows, :, positions] = key[:, :, 0], value[:, :, 0]
            hidden = _attend(layer.attention.output, hidden, query, keys[:, :, :seen], values[:, :, :seen], mask)
            cross = layer.crossattention.self
            hidden = _attend(layer.crossattention.output, hidden, _heads(cross.query(hidden), cross), *image)
            inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden))
            hidden = layer.output.LayerNorm(layer.output.dense(inner) + hidden)
        done = torch.tensor(self._done, device=positions.device)
        self._last = torch.where(done, self._pad, self.decoder.cls(hidden)[:, -1].argmax(-1))
        finished = {}
        for row, (token, position) in enumerate(zip(self._last.tolist(), positions.tolist(), strict=True)):
            if self._done[row]:
                continue
            self._tokens[row].append(token)
            if token == self._sep or position + 1 == self.max_new_tokens:
                self._done[row] = True
                finished[self._keys[row]] = self._tokens[row]
        self._positions = (positions + 1).clamp(max=self.max_new_tokens - 1)  # finished rows stay in their cache
        return finished

    def _leave_finished(self) -> None:
        keep = [row for row, done in enumerate(self._done) if not done]
        if len(keep) == len(self._done):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self._positions.device)
        self._cross = [(keys[index], values[index]) for keys, values in self._cross]
        self._cache = [(keys[index], values[index]) for keys, values in self._cache]
        self._last, self._positions = self._last[index], self._positions[index]
        self._keys, self._tokens = [self._keys[row] for row in keep], [self._tokens[row] for row in keep]
        self._done = [False] * len(keep)


def greedy(decoder: torch.nn.Module, features: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy token ids (``[DEC]`` first) for the vision tower's ``features``, all rows decoded together:
    what ``generate(do_sample=False, num_beams=1)`` gives, rows that reached ``[SEP]`` padded."""
    rows = Rows(decoder, max_new_tokens)
    keys, finished = rows.join(features), {}
    while rows.busy:
        finished.update(rows.step())
    longest = max(len(tokens) for tokens in finished.values())
    pad = decoder.config.pad_token_id
    return torch.tensor([finished[key] + [pad] * (longest - len(finished[key])) for key in keys],
                        dtype=torch.long, device=features.device)


def _appended(old: list[tuple[torch.Tensor, torch.Tensor]],
              new: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the new rows' keys and values after the old rows'."""
    if not old:
        return new
    return [(torch.cat([a, c]), torch.cat([b, d])) for (a, b), (c, d) in zip(old, new, strict=True)]


def _stacked(decoder: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """Per layer, the self-attention's query, key and value projections as one layer, and the cross-attention's
    key and value as one: a third of the calls, the same outputs, for a copy of those weights (BLIP-base: 35 MB
    in int8, 71 MB in bf16). Built once per decoder, whose weights are taken as fixed (captions are decoded from
    loaded models; training decodes with ``generate``)."""
    if decoder not in _STACKED:
        with torch.inference_mode(False):  # plain tensors, usable in and out of inference mode
            _STACKED[decoder] = [(stacked_linears([own.query, own.key, own.value]),
                                  stacked_linears([cross.key, cross.value]))
                                 for own, cross in ((layer.attention.self, layer.crossattention.self)
                                                    for layer in decoder.bert.encoder.layer)]
    return _STACKED[decoder]


def _heads(x: torch.Tensor, attention: torch.nn.Module) -> torch.Tensor:
    """(batch, tokens, hidden) → (batch, heads, tokens, head size)."""
    return x.view(x.shape[0], -1, attention.num_attention_heads, attention.attention_head_size).transpose(1, 2)


def _split(stacked: torch.Tensor, attention: torch.nn.Module) -> list[torch.Tensor]:
    """A stacked projection's output (batch, tokens, n × hidden) as its n parts, each in :func:`_heads`' shape."""
    return [_heads(part, attention) for part in stacked.split(attention.all_head_size, -1)]


def _attend(output: torch.nn.Module, hidden: torch.Tensor, query: torch.Tensor, keys: torch.Tensor,
            values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One token's attention over ``keys``/``values`` (those ``mask`` allows, or all) and its output block, as
    ``BlipTextAttention`` computes it."""
    context = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
    return output.LayerNorm(output.dense(context.transpose(1, 2).reshape(hidden.shape[0], 1, -1)) + hidden)
