"""A pystorm spout for Squall's multilang tests: emits ["s<i>", i] with
message id "s<i>" for i < COUNT, replays what fails, and appends
"ack <id>" / "fail <id>" lines to the file EVENTS."""
import os

from pystorm import Spout


class TestSpout(Spout):
    def initialize(self, conf, context):
        self.count = int(os.environ.get("COUNT", "100"))
        self.events = open(os.environ["EVENTS"], "a", buffering=1)
        self.next_i = 0
        self.replay = []

    def next_tuple(self):
        if self.replay:
            i = self.replay.pop()
        elif self.next_i < self.count:
            i = self.next_i
            self.next_i += 1
        else:
            return
        self.emit(["s%d" % i, i], tup_id="s%d" % i)

    def ack(self, tup_id):
        self.events.write("ack %s\n" % tup_id)

    def fail(self, tup_id):
        self.events.write("fail %s\n" % tup_id)
        self.replay.append(int(tup_id[1:]))


if __name__ == "__main__":
    TestSpout().run()
