"""TODO sr"""
