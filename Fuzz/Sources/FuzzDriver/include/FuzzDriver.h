#ifndef X402_FUZZ_DRIVER_H
#define X402_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry point for a program that has its own `main` (SwiftPM gives every executable
// target one): runs the fuzzing loop with `callback` as the target, parsing libFuzzer's flags from
// argc/argv. Provided by -sanitize=fuzzer (compiler-rt's libclang_rt.fuzzer).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
