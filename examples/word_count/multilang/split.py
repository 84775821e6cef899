"""Word count's split bolt in Python (pystorm): a word is a maximal run of
alphanumeric characters, lowercased, as in the Rust split bolt. Emits are
anchored to the line; the line is acked after its words are emitted."""
import re

from pystorm import Bolt

WORD = re.compile(r"[^\W_]+")


class SplitBolt(Bolt):
    def process(self, tup):
        for word in WORD.findall(tup.values[0]):
            self.emit([word.lower()])


if __name__ == "__main__":
    SplitBolt().run()
