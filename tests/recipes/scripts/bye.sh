#!/bin/sh -e
echo bye
