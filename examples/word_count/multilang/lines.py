"""Word count's line spout in Python (pystorm): emits every line of the
files listed (one path per line) in the file named by WORD_COUNT_FILES,
with message id "<file index>:<line index>", up to BATCH lines per `next`;
failed lines are replayed first."""
import os
import time

from pystorm import Spout

BATCH = 64


def read_lines(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class LineSpout(Spout):
    def initialize(self, conf, context):
        with open(os.environ["WORD_COUNT_FILES"]) as f:
            paths = [p for p in f.read().split("\n") if p]
        self.files = [read_lines(p) for p in paths]
        self.file = 0
        self.line = 0
        self.replay = []

    def next_line(self):
        if self.replay:
            return self.replay.pop()
        while self.file < len(self.files):
            if self.line < len(self.files[self.file]):
                position = (self.file, self.line)
                self.line += 1
                return position
            self.file += 1
            self.line = 0
        return None

    def next_tuple(self):
        for _ in range(BATCH):
            position = self.next_line()
            if position is None:
                time.sleep(0.001)
                return
            f, i = position
            self.emit([self.files[f][i]], tup_id="%d:%d" % position)

    def fail(self, tup_id):
        f, i = tup_id.split(":")
        self.replay.append((int(f), int(i)))


if __name__ == "__main__":
    LineSpout().run()
