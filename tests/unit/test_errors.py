"""errors.summary: an exception in one line for fallback warnings."""

from foldcp.errors import summary


def test_summary_is_the_first_line_or_the_type():
    assert summary(RuntimeError("out of resources: shared memory\nrequired: 120000")) == \
        "out of resources: shared memory"
    assert summary(RuntimeError("x" * 300)) == "x" * 200
    assert summary(RuntimeError()) == "RuntimeError"  # an empty message: its type's name
