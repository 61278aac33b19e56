"""Sample modules for tests/test_ast_rewrite.py: functions written to exercise every
construct the AST rewriter instruments. Line positions inside a function matter to the
tests (node ids are relative to the def line); add new samples at the end of a file."""
