# Writes the text file IN as a C++ raw string literal into OUT (an #include-able fragment), for
# sources that embed a file at build time (src/rad/io/hf_modeling.cpp). Run as
#   cmake -DIN=<file> -DOUT=<fragment> -P embed_text.cmake
# The delimiter must not occur in the file; the build stops if it does.
if(NOT DEFINED IN OR NOT DEFINED OUT)
  message(FATAL_ERROR "embed_text.cmake: pass -DIN=<file> -DOUT=<fragment>")
endif()
set(delimiter "rad_embed")
file(READ "${IN}" content)
string(FIND "${content}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "embed_text.cmake: ${IN} contains the raw-string delimiter )${delimiter}\"")
endif()
# GCC and Clang take long literals; the fragment is one literal, the file's bytes unchanged.
set(text "// Generated from ${IN} by cmake/embed_text.cmake: do not edit.\nR\"${delimiter}(${content})${delimiter}\"\n")
# Rewrite only on change, so that dependents do not rebuild needlessly.
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
  if(old STREQUAL text)
    return()
  endif()
endif()
file(WRITE "${OUT}" "${text}")
