"""The base of every error whose one-line message is meant for the user as it is."""


class MmerError(Exception):
    """A problem with the user's input (file, option, data, checkpoint) that the message fully explains.

    Library errors subclass it and name the parameter at fault; the CLI prints the message on one line
    and exits non-zero, never with a traceback.
    """
