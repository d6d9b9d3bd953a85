"""The frames of the current acquisition kept in memory for readImage/readImageSeq (Lima's buffer).

Lima keeps the newest `buffer_max_number` frames of an acquisition; asking for one that is not
taken yet, or already overwritten, is refused with the range that is available.
"""

import collections
import threading

import numpy as np

from .backend import Frame


class FrameUnavailable(LookupError):
    """The requested frames are not in the buffer; the message gives the range that is."""


class FrameBuffer:
    """The newest `capacity` frames, by index (0 = first frame of the acquisition)."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self._frames: collections.deque[Frame] = collections.deque(maxlen=self.capacity)
        self._lock = threading.Lock()

    def resize(self, capacity: int) -> None:
        """Keep the newest `capacity` frames from now on (the frames' size changed)."""
        with self._lock:
            self.capacity = max(1, capacity)
            self._frames = collections.deque(self._frames, maxlen=self.capacity)

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def add(self, frame: Frame) -> None:
        with self._lock:
            self._frames.append(frame)

    def _available(self) -> str:
        if not self._frames:
            return "no frame is available yet"
        return f"frames {self._frames[0].index} to {self._frames[-1].index} are available"

    def frame(self, index: int) -> Frame:
        """Frame `index`; -1 is the newest."""
        return self.frames(index, index + 1)[0] if index >= 0 else self.frames(-1, 0)[0]

    def frames(self, start: int, end: int) -> list[Frame]:
        """Frames start .. end-1 (Lima's readImageSeq range); start -1: the newest frame alone."""
        with self._lock:
            if start == -1 and self._frames:
                return [self._frames[-1]]
            if not self._frames or end <= start or start < self._frames[0].index or end - 1 > self._frames[-1].index:
                raise FrameUnavailable(f"frames {start} to {end - 1} are not in the buffer: {self._available()}")
            first = self._frames[0].index
            return [self._frames[i - first] for i in range(start, end)]

    def stack(self, start: int, end: int) -> np.ndarray:
        """Frames start .. end-1 as one (frames, rows, columns) array."""
        return np.stack([f.data for f in self.frames(start, end)])
