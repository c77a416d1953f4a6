"""Mutation adequacy (`gradcheck mutate`): whether a case can catch a bug in its backward."""

from .run import CaseMutation, MutantResult, MutationRun, mutate, mutate_case

__all__ = ["CaseMutation", "MutantResult", "MutationRun", "mutate", "mutate_case"]
