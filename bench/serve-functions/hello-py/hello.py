# The "hello" handler as today's functions run it: the interpreter starts for each request and prints the body.
import sys

sys.stdout.write("hello\n")
