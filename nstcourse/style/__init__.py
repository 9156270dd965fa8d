"""TODO style"""
