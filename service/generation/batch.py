"""The shared decode batch: every running row's key/value cache, left-padded to one length.

Rows of different requests have caches of different lengths. They share a step by left-padding:
row ``b`` holds its real tokens in the last columns, ``attention_mask[b]`` is 0 over its padding, and
its position ids count real tokens only. After a step each row has grown by one; rows that finish are
dropped, beams are reordered, and new rows join (padded to the common length); columns that every
row pads are trimmed away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.generation.device import is_device

if TYPE_CHECKING:
    from service.generation.device import DeviceCache


def pad_to(array: np.ndarray, axis: int, length: int, left: bool = True) -> np.ndarray:
    """Zeros before (left) or after the data along `axis`, up to `length`."""
    missing = length - array.shape[axis]
    if missing == 0:
        return array
    # zeros + one slice copy: np.pad's general machinery cost more than the copy (a decode-thread hot spot)
    shape = list(array.shape)
    shape[axis] = length
    out = np.zeros(shape, array.dtype)
    index = [slice(None)] * array.ndim
    index[axis] = slice(missing, None) if left else slice(0, array.shape[axis])
    out[tuple(index)] = array
    return out


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """Each token's position counting real tokens only; padding gets 0."""
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int64)


@dataclass
class Rows:
    """``ids``/``mask`` [B, P]: what each row has seen (left-padded); ``past_key``/``past_value``
    [L, B, H, P, dh] its cache; ``next_ids`` [B] the token each feeds next, at
    ``positions`` [B]. With ``device`` (service.generation.device) the caches may be OrtValues on the
    device, and reordering, trimming and joining them runs there; ids, mask and positions stay numpy."""

    ids: np.ndarray
    mask: np.ndarray
    past_key: np.ndarray
    past_value: np.ndarray
    next_ids: np.ndarray
    positions: np.ndarray
    device: DeviceCache | None = None

    @property
    def size(self) -> int:
        return int(self.next_ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    @classmethod
    def fresh(cls, next_ids: np.ndarray, cache_shape: tuple[int, int, int], device: DeviceCache | None = None) -> "Rows":
        """Rows with nothing seen yet (a decoder starting from bos). cache_shape: (layers, heads, head_dim).
        The empty caches are numpy even with a device (zero bytes to copy)."""
        b = len(next_ids)
        empty = np.zeros((cache_shape[0], b, cache_shape[1], 0, cache_shape[2]), np.float32)
        return cls(np.zeros((b, 0), np.int64), np.zeros((b, 0), np.int64), empty, empty.copy(),
                   np.asarray(next_ids, np.int64), np.zeros(b, np.int64), device)

    def _on_device(self) -> bool:
        return self.device is not None and (is_device(self.past_key) or is_device(self.past_value))

    @classmethod
    def concat(cls, parts: list["Rows"]) -> "Rows":
        parts = [p for p in parts if p.size]
        if len(parts) == 1:
            return parts[0]
        length = max(p.length for p in parts)
        device = next((p.device for p in parts if p.device is not None), None)
        if device is not None and any(p._on_device() for p in parts):
            # fold pairwise on the device: left-padding to the longest so far, then to the overall longest, is the same.
            # Host parts (fresh rows: an empty past) are padded here first, so no graph ever pads an empty tensor.
            def cache_of(p: Rows) -> tuple:
                if p._on_device():
                    return p.past_key, p.past_value
                return pad_to(p.past_key, 3, length), pad_to(p.past_value, 3, length)

            cache = cache_of(parts[0])
            for part in parts[1:]:
                cache = device.join(cache, cache_of(part))
            return cls(np.concatenate([pad_to(p.ids, 1, length) for p in parts]),
                       np.concatenate([pad_to(p.mask, 1, length) for p in parts]), cache[0], cache[1],
                       np.concatenate([p.next_ids for p in parts]), np.concatenate([p.positions for p in parts]), device)

        return cls(
            np.concatenate([pad_to(p.ids, 1, length) for p in parts]),
            np.concatenate([pad_to(p.mask, 1, length) for p in parts]),
            np.concatenate([pad_to(p.past_key, 3, length) for p in parts], axis=1),
            np.concatenate([pad_to(p.past_value, 3, length) for p in parts], axis=1),
            np.concatenate([p.next_ids for p in parts]),
            np.concatenate([p.positions for p in parts]),
            device,
        )

    def take(self, index: np.ndarray) -> "Rows":
        """Rows in a new order (repeats allowed: beams that branch), then trimmed."""
        if self._on_device():  # one graph run on the device: gather the rows and trim the columns together
            mask = self.mask[index]
            first = _padding_columns(mask)
            key, value = self.device.select(self.past_key, self.past_value, index, first)
            return Rows(self.ids[index][:, first:], mask[:, first:], key, value, self.next_ids[index],
                        self.positions[index], self.device)
        rows = Rows(self.ids[index], self.mask[index],
                    np.take(self.past_key, index, axis=1), np.take(self.past_value, index, axis=1),
                    self.next_ids[index], self.positions[index], self.device)
        return rows.trimmed()

    def trimmed(self) -> "Rows":
        """Drop the leading columns that are padding in every row."""
        first = _padding_columns(self.mask)
        if not first:
            return self
        if self._on_device():
            return self.take(np.arange(self.size))
        return Rows(self.ids[:, first:], self.mask[:, first:], self.past_key[:, :, :, first:],
                    self.past_value[:, :, :, first:], self.next_ids, self.positions, self.device)

    def feeds(self) -> dict[str, np.ndarray]:
        """Decoder inputs for one step of every row."""
        mask = np.concatenate([self.mask, np.ones((self.size, 1), np.int64)], axis=1)
        return {"input_ids": self.next_ids[:, None], "position_ids": self.positions[:, None], "attention_mask": mask,
                "past_key": self.past_key, "past_value": self.past_value}

    def advanced(self, present_key: np.ndarray, present_value: np.ndarray) -> "Rows":
        """After a step: each row has seen its next token (the caller then picks the rows' new next tokens)."""
        return Rows(np.concatenate([self.ids, self.next_ids[:, None]], axis=1),
                    np.concatenate([self.mask, np.ones((self.size, 1), np.int64)], axis=1),
                    present_key, present_value, self.next_ids, self.positions + 1, self.device)


def _padding_columns(mask: np.ndarray) -> int:
    """How many leading columns are padding in every row (0 when the first column is used somewhere)."""
    if not mask.shape[1] or mask[:, 0].any():
        return 0
    used = mask.any(axis=0)
    return int(used.argmax()) if used.any() else mask.shape[1]
