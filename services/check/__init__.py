"""`tiendo check`: does what people act on agree with the one state? (docs/check.md)"""
