// The body of rad_runtime_torch_free (CMakeLists.txt): a shared object made of every object of the
// libtorch-free libraries rad_runtime and rad_serve, linked with -Wl,--no-undefined and without
// libtorch, so that a libtorch symbol reached from any of them fails the build. Nothing calls it.
namespace rad {
int runtime_torch_free_check() { return 0; }
}  // namespace rad
