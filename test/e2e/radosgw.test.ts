/**
 * Proves the radosgw helper (the real S3 server of the object-storage tests), without regmirror: a signed PUT and
 * GET through @aws-sdk/client-s3 on a fresh bucket, a ranged GET, a presigned GET URL that works with plain HTTP and
 * one whose signature was tampered with that does not, and the gateway stopped alone and started again with the
 * object still there (what the "object storage stopped mid-run" tests rely on).
 */
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { requirePrograms } from '../helpers/programs.js'
import { clientOf } from '../helpers/bucket.js'
import { RADOSGW_PROGRAMS, startRadosgw } from '../helpers/radosgw.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

if (requirePrograms(t, RADOSGW_PROGRAMS)) {
  t.test('radosgw: signed PUT/GET, ranges, presigned URLs, gateway restart', async (t) => {
    const rgw = await startRadosgw({ t })
    const bucket = await rgw.createBucket('helper')
    const s3 = clientOf(rgw)
    t.teardown(() => s3.destroy())
    const body = randomBytes(3 * 1024 * 1024 + 17)
    const Key = `blobs/sha256/${sha(body)}`
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body }))

    const got = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body!.transformToByteArray())
    t.equal(sha(got), sha(body), 'GET returns the bytes PUT stored')
    const ranged = await s3.send(new GetObjectCommand({ Bucket: bucket, Key, Range: 'bytes=100-199' }))
    t.same(Buffer.from(await ranged.Body!.transformToByteArray()), body.subarray(100, 200), 'a ranged GET returns that range')

    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key }), { expiresIn: 60 })
    const plain = await fetch(url)
    t.equal(plain.status, 200, 'a presigned URL works without credentials')
    t.equal(sha(Buffer.from(await plain.arrayBuffer())), sha(body), 'and returns the object')
    const tampered = new URL(url)
    const signature = tampered.searchParams.get('X-Amz-Signature')!
    tampered.searchParams.set('X-Amz-Signature', (signature[0] === '0' ? '1' : '0') + signature.slice(1))
    const refused = await fetch(tampered)
    await refused.arrayBuffer()
    t.equal(refused.status, 403, 'a presigned URL with a changed signature is refused')
    const anonymous = await fetch(`${rgw.endpoint}/${bucket}/${Key}`)
    await anonymous.arrayBuffer()
    t.equal(anonymous.status, 403, 'an unsigned GET is refused')

    await rgw.stopGateway()
    await t.rejects(fetch(`${rgw.endpoint}/`), 'the endpoint refuses connections while the gateway is stopped')
    await rgw.startGateway()
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key }))
    t.equal(head.ContentLength, body.length, 'the object survives a gateway restart')
  })
}
