"""Attack: terminal escape sequences and a fake green total, printed and raised.

Clear the screen, set the window title, write the clipboard (OSC 52), then a
green "Total: 100 / 100", with a carriage return and NUL, and Markdown and
HTML that would close the report's table or open a script. Every view must
show all of it as the student's text, escaped, never as the grader's.
"""

FAKE = ("\x1b[2J\x1b[H\x1b]0;graded: 100/100\x07\x1b]52;c;ZWNobyBoaQ==\x07"
        "\x1b[1;32mTotal: 100 / 100\x1b[0m")


def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    print(FAKE)
    print("\r\x00\x9b31m\u202eevil")
    raise RuntimeError(FAKE + "\r\nTotal: 100 / 100\n| x | y |</td><script>alert(1)</script>\n```\n"
                       "## Total: 100 / 100 \x00")
