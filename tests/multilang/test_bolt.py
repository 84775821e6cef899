"""A pystorm bolt for Squall's multilang tests. MODE picks the behaviour:

split        emit each word of value 0 (anchored), report metric "words"
fail-first   fail a tuple the first time its value is seen, else ack
direct       emit [v] asking for task ids, then [v, ids] directly to ids[0]
log          log at every level through Storm's log command, then ack
hang-after   ack N (AFTER) tuples, then stop answering
garbage      after AFTER tuples, write a line that is not JSON to stdout
raise-once   raise an exception on value RAISE_ON the first time (a marker
             file in PIDS_DIR remembers it across restarts)

Every process writes an empty file named by its pid into PIDS_DIR.
"""
import os
import re
import sys
import time

from pystorm import Bolt

WORD = re.compile(r"[^\W_]+")


class TestBolt(Bolt):
    auto_ack = False
    auto_fail = True

    def initialize(self, conf, context):
        self.mode = os.environ.get("MODE", "split")
        self.after = int(os.environ.get("AFTER", "0"))
        self.pids = os.environ.get("PIDS_DIR")
        self.seen = set()
        self.count = 0
        if self.pids:
            open(os.path.join(self.pids, str(os.getpid())), "w").close()
        self.context_seen = context

    def process(self, tup):
        self.count += 1
        mode = self.mode
        value = tup.values[0] if tup.values else None
        if mode == "split":
            words = WORD.findall(str(value))
            for w in words:
                self.emit([w.lower()])
            self.report_metric("words", len(words))
            self.ack(tup)
        elif mode == "fail-first":
            key = repr(tup.values)
            if key in self.seen:
                self.emit([value])
                self.ack(tup)
            else:
                self.seen.add(key)
                self.fail(tup)
        elif mode == "direct":
            ids = self.emit([value], need_task_ids=True)
            self.emit([value, list(ids)], stream="direct", direct_task=ids[0])
            self.ack(tup)
        elif mode == "log":
            for level in ("trace", "debug", "info", "warn", "error"):
                self.log("pystorm says %s at %s (task %s of %s)"
                         % (value, level, self.context_seen["taskid"],
                            self.context_seen["componentid"]), level=level)
            self.ack(tup)
        elif mode == "hang-after":
            if self.count > self.after:
                time.sleep(3600)
            self.ack(tup)
        elif mode == "garbage":
            if self.count > self.after:
                sys.__stdout__.write("this is not json\nend\n")
                sys.__stdout__.flush()
            self.ack(tup)
        elif mode == "raise-once":
            marker = os.path.join(self.pids, "raised")
            if str(value) == os.environ["RAISE_ON"] and not os.path.exists(marker):
                open(marker, "w").close()
                raise ValueError("raise-once on %r" % (value,))
            self.emit([value])
            self.ack(tup)
        else:
            raise ValueError("unknown MODE %r" % mode)


if __name__ == "__main__":
    TestBolt().run()
