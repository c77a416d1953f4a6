"""Mutation adequacy (`gradcheck mutate`): whether a case can catch a bug in its backward."""
