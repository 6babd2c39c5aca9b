// What tests read over the distribution API.

/** The code of the first error in an OCI error body (`{"errors":[{"code":...}]}`). */
export function errorCode(body: Buffer | string): string | undefined {
  return (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code
}
