/**
 * WebAssembly's compiled module and memory, as the declarations this package ships name them.
 * TypeScript declares the WebAssembly namespace in its DOM library only (@types/node does not),
 * so declarations that named it failed in a Node project whose `lib` has no "dom" (unless it
 * skips checking libraries). Where the namespace is declared these are its types; elsewhere any
 * object, which is what WebAssembly.Module (an empty interface) accepts anyway.
 */
type WasmNamespace = typeof globalThis extends { WebAssembly: infer W } ? W : never;
type Built<K extends string> = WasmNamespace extends { [key in K]: abstract new (...args: never[]) => infer I } ? I : object;

export type WasmModule = Built<'Module'>;
export type WasmMemory = Built<'Memory'>;
