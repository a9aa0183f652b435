# Shared build flags: warnings are errors, and a target may import only what it declares
# (this turns the layer table in docs/architecture.md into a compile error when broken).
SWIFT_FLAGS=(-Xswiftc -warnings-as-errors --explicit-target-dependency-import-check error)
