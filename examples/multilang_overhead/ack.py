"""Acks every tuple and emits nothing: the multilang protocol's cost alone."""
from pystorm import Bolt


class AckBolt(Bolt):
    auto_anchor = False

    def process(self, tup):
        pass


if __name__ == "__main__":
    AckBolt().run()
