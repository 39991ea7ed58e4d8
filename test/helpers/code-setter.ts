/**
 * Runs fn with a `code` setter on Error.prototype that throws, as hostile or careless script
 * might install, and removes it afterwards whatever fn does. The library must give its errors
 * their code without calling it.
 */
export async function withThrowingCodeSetter<T>(fn: () => T | Promise<T>): Promise<T> {
  const saved = Object.getOwnPropertyDescriptor(Error.prototype, 'code');
  Object.defineProperty(Error.prototype, 'code', {
    configurable: true,
    set() {
      throw new Error('code setter');
    },
  });
  try {
    return await fn();
  } finally {
    if (saved) Object.defineProperty(Error.prototype, 'code', saved);
    else delete (Error.prototype as { code?: unknown }).code;
  }
}
