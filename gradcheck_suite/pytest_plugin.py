"""placeholder until issue 5"""
