# The "hello" handler as a function written plainly runs it: `python3 hello.py`, site initialisation
# included (the ~75 ms start of `python3 -c pass`). hello-py is the same with -S, started as fast as it can.
import sys

sys.stdout.write("hello\n")
