"""Block structure: pruning whole blocks of weights instead of single weights.

``pruning.structure`` is ``"unstructured"`` (every weight ranked on its own, the paper's)
or a block shape ``[rows, cols]`` over the last two axes of a kernel, its ``(inputs,
outputs)``:

- a ``Dense`` kernel (in × out) is cut into blocks of ``rows`` consecutive input rows and
  ``cols`` consecutive output columns. ``[4, 1]`` prunes 4 consecutive inputs of one output
  unit together: the layout of TFLite/LiteRT's 1x4 sparse FULLY_CONNECTED kernel (which
  stores weights out × in), ``[16, 1]`` that of its int8 1x16 kernel;
- a convolution kernel (kh × kw × in × out) is cut the same way along its input and output
  channels, separately at each kernel position: ``[4, 1]`` prunes 4 consecutive input
  channels of one output channel at one position.

Where a kernel's size is not a multiple of the block, the last block of the axis is
shorter. A block is scored by the mean of its members' scores, kept or pruned whole, and
a pruned block never comes back. Counts are of whole blocks: a layer at rate ``p`` keeps
``round(blocks * (1 - p) ** r)`` blocks after round ``r`` (:func:`keep_count`).

Pure numpy.
"""

import numpy as np

UNSTRUCTURED = "unstructured"


def block_shape(structure):
    """``(rows, cols)`` of a ``pruning.structure``, or None when unstructured."""
    if structure is None or structure == UNSTRUCTURED:
        return None
    rows, cols = structure
    return int(rows), int(cols)


def problem(structure):
    """What is wrong with a ``pruning.structure`` value, or None if it is valid."""
    if structure == UNSTRUCTURED:
        return None
    if isinstance(structure, str):
        return "\"unstructured\" or a block shape [rows, cols] such as [4, 1]"
    ok = (
        isinstance(structure, (list, tuple)) and len(structure) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in structure)
    )
    if not ok:
        return "\"unstructured\" or a block shape [rows, cols] of two integers >= 1, such as [4, 1]"
    if tuple(structure) == (1, 1):
        return "\"unstructured\" for blocks of one weight, or a block larger than [1, 1]"
    return None


def describe(structure):
    """``"4x1"`` for a block shape, ``"unstructured"`` otherwise."""
    shape = block_shape(structure)
    return UNSTRUCTURED if shape is None else f"{shape[0]}x{shape[1]}"


class Grid:
    """The blocks of one kernel of ``shape`` (at least 2-D) cut by ``block`` ``(rows, cols)``
    over its last two axes (inputs, outputs)."""

    def __init__(self, shape, block):
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) < 2:
            raise ValueError(f"a kernel shaped {self.shape} has no (inputs, outputs) axes to cut into blocks")
        self.block = block
        *self.lead, self.rows, self.cols = self.shape
        self.lead = tuple(self.lead)
        br, bc = block
        self.grid = (*self.lead, -(-self.rows // br), -(-self.cols // bc))

    @property
    def count(self):
        """The number of blocks."""
        return int(np.prod(self.grid))

    def _padded(self, values, fill):
        """``values`` padded with ``fill`` to whole blocks, shaped (lead, gr, br, gc, bc)."""
        br, bc = self.block
        *_, gr, gc = self.grid
        values = np.asarray(values, np.float64).reshape((-1, self.rows, self.cols))
        padded = np.full((values.shape[0], gr * br, gc * bc), fill, np.float64)
        padded[:, : self.rows, : self.cols] = values
        return padded.reshape((values.shape[0], gr, br, gc, bc))

    def mean(self, values):
        """Each block's mean of ``values`` (a kernel-shaped array), shaped :attr:`grid`."""
        padded = self._padded(values, np.nan)
        members = (~np.isnan(padded)).sum(axis=(2, 4))
        return (np.nansum(padded, axis=(2, 4)) / members).reshape(self.grid)

    def any(self, mask):
        """True for each block with any member nonzero in ``mask``, shaped :attr:`grid`."""
        return (self._padded(mask, 0.0) != 0).any(axis=(2, 4)).reshape(self.grid)

    def sizes(self):
        """Members of each block (blocks at the end of an axis may be shorter), shaped :attr:`grid`."""
        return self._padded(np.ones(self.shape), 0.0).sum(axis=(2, 4)).astype(np.int64).reshape(self.grid)

    def expand(self, block_mask):
        """The kernel-shaped 0/1 float32 mask of a 0/1 mask over the blocks."""
        br, bc = self.block
        grid = np.asarray(block_mask, np.float32).reshape((-1, *self.grid[-2:]))
        full = np.repeat(np.repeat(grid, br, axis=1), bc, axis=2)
        return np.ascontiguousarray(full[:, : self.rows, : self.cols]).reshape(self.shape)

    def is_blocked(self, mask):
        """True when every block of ``mask`` is all kept or all pruned."""
        mask = np.asarray(mask)
        return bool(np.array_equal(self.expand(self.any(mask)), (mask != 0).astype(np.float32)))


def describe_layer(shape, rate, structure):
    """What a block ``structure`` makes of a layer with kernel ``shape`` pruned at ``rate``:
    its blocks and the real rate of its first round (a whole number of blocks), or ""."""
    block = block_shape(structure)
    if block is None:
        return ""
    from keras_lottery.pruning.masks import keep_count

    grid = Grid(shape, block)
    where = " at each kernel position" if len(grid.shape) > 2 else ""
    return (f"in {grid.count:,} blocks of {block[0]} inputs x {block[1]} outputs{where}; "
            f"round 1 really prunes {100 * (1 - keep_count(grid.count, rate, 1) / grid.count):.2f}% of its blocks")


def grids(shapes, structure):
    """``{layer: Grid}`` for the kernel ``shapes`` (``{layer: shape}``), or None when unstructured."""
    block = block_shape(structure)
    if block is None:
        return None
    return {name: Grid(shape, block) for name, shape in shapes.items()}
